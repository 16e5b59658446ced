/* pam-totp's Cockpit page (plain JavaScript, cockpit.js only; no build step).
 *
 * Every decision is the CLI's: the page runs `pam-totp` through the bridge and shows what it
 * says. As the logged-in user (the setuid helper's rules and proofs apply):
 *   pam-totp status --json                      the status card
 *   pam-totp enroll|recovery|disable --conversation
 *       stdout: one JSON event per line (prompt, info, new_key, recovery_codes, status, done,
 *       error); stdin: one JSON answer per line ({"answer": ...} or {"cancel": true}).
 *       Passwords and codes typed here go to the CLI's stdin and are never kept.
 * With administrative access (superuser: "require"):
 *   pam-totp list --json, unlock USER, disable USER, enroll USER --force --json,
 *   policy show --json and the policy edit verbs.
 * Errors are the CLI's own messages (its stderr, or the `error` event), shown as they are. */
"use strict";

(function () {
    const PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    const ENV = [PATH, "LC_ALL=C.UTF-8"];

    const $ = id => document.getElementById(id);
    const show = (id, on) => { $(id).hidden = !on };
    const setText = (id, text) => { $(id).textContent = text == null ? "" : String(text) };

    /* ---- theme: the same rule as Cockpit's own pages (localStorage "shell:style") ---- */
    function applyTheme(style) {
        const s = style || window.localStorage.getItem("shell:style") || "auto";
        const dark = s === "dark" ||
            (s === "auto" && window.matchMedia &&
             window.matchMedia("(prefers-color-scheme: dark)").matches);
        document.documentElement.classList.toggle("pf-theme-dark", dark);
    }
    applyTheme();
    window.addEventListener("storage", ev => { if (ev.key === "shell:style") applyTheme(ev.newValue) });
    window.addEventListener("cockpit-style", ev => applyTheme(ev.detail && ev.detail.style));
    if (window.matchMedia)
        window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme());

    /* ---- formatting (presentation only) ---- */
    function fmtTime(iso) {
        if (!iso) return null;
        return String(iso).replace("T", " ").replace(/Z$/, " UTC");
    }
    function errText(ex) {
        if (!ex) return "failed";
        if (ex.message) return String(ex.message).trim();
        return cockpit.message(ex);
    }

    /* data-busy on <body>: how many CLI runs are under way (tests wait for 0) */
    function busy(delta) {
        document.body.dataset.busy = String(Number(document.body.dataset.busy || 0) + delta);
    }

    function run(args, opts) {
        busy(1);
        const p = cockpit.spawn(["pam-totp"].concat(args), Object.assign({ err: "message", environ: ENV }, opts || {}));
        p.always(() => busy(-1));
        return p;
    }
    function runAdmin(args) {
        return run(args, { superuser: "require" });
    }

    /* `pam-totp enroll USER --force --json` for an administrator, with the QR code as SVG: the
       CLI writes it to a file (--qr-svg) in a private temporary directory that is removed at
       once; stdout is the CLI's JSON, a form feed, then the SVG. */
    const REENROL = 'set -e; d=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; ' +
        'pam-totp enroll "$1" --force --json --qr none --qr-svg "$d/qr.svg" >"$d/key.json"; ' +
        'cat "$d/key.json"; printf "\\n\\f\\n"; cat "$d/qr.svg"';

    function reenrol(user) {
        busy(1);
        const p = cockpit.script(REENROL, [user], { superuser: "require", err: "message", environ: ENV });
        p.always(() => busy(-1));
        return p;
    }

    /* ---- your own status ---- */
    function describeType(st) {
        if (!st.algorithm) return "—";
        return "TOTP, " + st.algorithm + ", " + st.digits + " digits, " + st.period + " s";
    }
    function describeRequired(st) {
        if (!st.required) return "no";
        let t = "yes (" + (st.required_by || "policy") + ")";
        if (st.grace_until) t += ", grace until " + fmtTime(st.grace_until);
        return t;
    }
    function describeLast(ls) {
        if (!ls) return "never";
        return fmtTime(ls.time) + " from " + (ls.rhost || "this machine (no remote host)");
    }
    function describeClock(st) {
        const off = st.clock_offset_seconds;
        if (off === null || off === undefined) return "not known yet (no login with a code)";
        if (off === 0) return "in time (offset 0 s)";
        return (off < 0 ? -off + " s behind" : off + " s ahead") + " (offset " + off +
            " s); turn on automatic time on the phone";
    }

    function renderStatus(st) {
        show("self-loading", false);
        show("status", true);
        const dl = $("status");
        dl.dataset.user = st.user || "";
        dl.dataset.state = st.state || "";
        setText("st-state", st.state);
        setText("st-type", describeType(st));
        setText("st-created", fmtTime(st.created) || "—");
        setText("st-last", describeLast(st.last_success));
        setText("st-recovery", st.recovery_codes_left == null ? "—" : st.recovery_codes_left);
        setText("st-required", describeRequired(st));
        setText("st-locked", fmtTime(st.locked_until) || "not locked");
        setText("st-clock", describeClock(st));
        const on = st.state === "active" || st.state === "locked";
        show("enable", !on);
        show("renew", on);
        show("rekey", on);
        show("disable", on);
    }

    function loadStatus() {
        show("self-error", false);
        return run(["status", "--json"])
            .then(out => renderStatus(JSON.parse(out)))
            .catch(ex => {
                show("self-loading", false);
                setText("self-error-text", errText(ex));
                show("self-error", true);
            });
    }

    /* ---- a self-service conversation ---- */
    let flow = null;

    function resetFlow(title) {
        setText("flow-title", title);
        $("flow-info").textContent = "";
        show("key", false);
        show("codes", false);
        show("codes-copied", false);
        show("prompt-form", false);
        show("flow-result", false);
        show("flow-close", false);
        $("codes-list").textContent = "";
        $("qr").removeAttribute("src");
        $("prompt-input").value = "";
        show("test-hint", false);
        show("flow", true);
        $("flow").scrollIntoView({ block: "start" });
    }

    function info(text) {
        const p = document.createElement("p");
        p.textContent = text;
        $("flow-info").appendChild(p);
    }

    function result(kind, message, hint) {
        const box = $("flow-result");
        box.classList.remove("pf-m-success", "pf-m-danger", "pf-m-info");
        box.classList.add("pf-m-" + kind);
        setText("flow-result-text", message);
        setText("flow-result-hint", hint || "");
        show("flow-result", true);
        show("prompt-form", false);
        show("flow-close", true);
    }

    function showKey(ev) {
        $("qr").src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(ev.qr_svg || "");
        $("qr").hidden = !ev.qr_svg;
        $("qr").dataset.uri = ev.otpauth_uri || "";
        setText("key-account", ev.account);
        setText("key-issuer", ev.issuer);
        setText("key-groups", ev.key_groups);
        setText("key-type", ev.type);
        show("key", true);
        flow.keyShown = true;
    }

    function hideKey() {
        show("key", false);
        $("qr").removeAttribute("src");
        setText("key-groups", "");
    }

    /* The CLI may send the recovery codes before the code from the app has activated the new
       key; they are shown when the conversation ends with `done` (and never after `error`:
       then they were never valid). */
    function showCodes(codes) {
        const ol = $("codes-list");
        ol.textContent = "";
        for (const c of codes) {
            const li = document.createElement("li");
            li.textContent = c;
            ol.appendChild(li);
        }
        show("codes", true);
    }

    function echoIsPassword(text, echo) {
        return !echo && /password/i.test(text);
    }

    function showPrompt(text, echo) {
        document.body.dataset.prompts = String(Number(document.body.dataset.prompts || 0) + 1);
        setText("prompt-label", text);
        const input = $("prompt-input");
        input.type = echo ? "text" : "password";
        input.setAttribute("inputmode", /code/i.test(text) ? "numeric" : "text");
        input.value = "";
        // after a new key: the code tests it, and activates it when it matches
        const testing = !!(flow && flow.keyShown) && !echoIsPassword(text, echo);
        show("test-hint", testing);
        setText("prompt-submit", testing ? "Activate" : "Continue");
        show("prompt-form", true);
        $("prompt-submit").disabled = false;
        input.focus();
    }

    function onEvent(ev) {
        switch (ev.event) {
        case "prompt": showPrompt(ev.text, ev.echo); break;
        case "info": info(ev.text); break;
        case "new_key": showKey(ev); break;
        case "recovery_codes": flow.codes = ev.codes || []; break;
        case "status": renderStatus(ev.status); break;
        case "done":
            flow.ended = true;
            show("test-hint", false);
            if (flow.codes) showCodes(flow.codes);
            hideKey();   // active now: the key is not shown again
            flow.codes = null;
            result("success", ev.message);
            break;
        case "error":
            flow.ended = true;
            flow.codes = null;
            show("test-hint", false);
            result("danger", ev.message, ev.hint);
            break;
        default:
            if (ev.text) info(ev.text);
        }
    }

    function startFlow(verb, title) {
        if (flow && !flow.finished) flow.proc.close("terminated");
        resetFlow(title);
        const proc = run([verb, "--conversation"]);
        const f = flow = { proc, ended: false, finished: false, keyShown: false, codes: null };
        let buf = "";
        proc.stream(data => {
            buf += data;
            let i;
            while ((i = buf.indexOf("\n")) >= 0) {
                const line = buf.slice(0, i).trim();
                buf = buf.slice(i + 1);
                if (!line || f !== flow) continue;
                let ev;
                try {
                    ev = JSON.parse(line);
                } catch (e) {
                    info(line);
                    continue;
                }
                onEvent(ev);
            }
        });
        proc.then(() => {
            f.finished = true;
            if (f === flow && !f.ended) result("success", "Done.");
        }).catch(ex => {
            f.finished = true;
            if (f === flow && !f.ended) result("danger", errText(ex));
        }).finally(() => {
            if (f === flow) loadStatus();
        });
    }

    function answer(obj) {
        if (!flow || flow.finished) return;
        flow.proc.input(JSON.stringify(obj) + "\n", true);
    }

    function setupSelf() {
        $("enable").addEventListener("click", () => startFlow("enroll", "Turn on two-factor login"));
        $("rekey").addEventListener("click", () => startFlow("enroll", "New key for a new phone"));
        $("renew").addEventListener("click", () => startFlow("recovery", "New recovery codes"));
        $("disable").addEventListener("click", () => startFlow("disable", "Turn off two-factor login"));
        $("prompt-form").addEventListener("submit", ev => {
            ev.preventDefault();
            const input = $("prompt-input");
            const value = input.value;
            input.value = "";           // never kept: it goes to the CLI's stdin only
            $("prompt-submit").disabled = true;
            show("prompt-form", false);
            $("flow-info").textContent = "";   // what the CLI said about the last answer
            answer({ answer: value });
        });
        $("flow-cancel").addEventListener("click", () => {
            answer({ cancel: true });
            $("prompt-input").value = "";
            show("prompt-form", false);
        });
        $("flow-close").addEventListener("click", () => {
            show("flow", false);
            $("codes-list").textContent = "";  // shown once
        });
        $("codes-copy").addEventListener("click", () => {
            const text = Array.from($("codes-list").children).map(li => li.textContent).join("\n") + "\n";
            const done = () => show("codes-copied", true);
            if (navigator.clipboard && window.isSecureContext) {
                navigator.clipboard.writeText(text).then(done, () => copyBySelection());
            } else {
                copyBySelection();
            }
            function copyBySelection() {
                const r = document.createRange();
                r.selectNodeContents($("codes-list"));
                const sel = window.getSelection();
                sel.removeAllRanges();
                sel.addRange(r);
                if (document.execCommand("copy")) done();
            }
        });
        $("codes-print").addEventListener("click", () => {
            document.body.classList.add("pt-print-codes");
            window.print();
            document.body.classList.remove("pt-print-codes");
        });
    }

    /* ---- administrators ---- */
    let confirmBar = null;

    function adminError(ex) {
        show("admin-done", false);
        setText("admin-error-text", errText(ex));
        show("admin-error", true);
    }
    /* The CLI's own words: its stdout (first line as the title), and what it said on stderr
       while succeeding (warnings such as a group that does not exist yet). */
    function adminDone(out, warning) {
        show("admin-error", false);
        const lines = String(out || "").replace(/\s+$/, "").split("\n");
        setText("admin-done-text", lines[0] || "Done.");
        setText("admin-done-more", lines.slice(1).join("\n"));
        show("admin-done-more", lines.length > 1);
        setText("admin-done-warning", (warning || "").trim());
        show("admin-done-warning", !!(warning || "").trim());
        show("admin-done", true);
    }

    function button(label, cls, onclick, name) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "pf-c-button " + cls;
        b.textContent = label;
        if (name) b.dataset.action = name;
        b.addEventListener("click", onclick);
        return b;
    }

    function cell(text, label) {
        const td = document.createElement("td");
        td.textContent = text == null ? "" : String(text);
        if (label) td.dataset.label = label;
        return td;
    }

    function confirmThen(row, question, action) {
        if (confirmBar) confirmBar.remove();
        const tr = document.createElement("tr");
        tr.className = "pt-confirm";
        const td = document.createElement("td");
        td.colSpan = 7;
        const p = document.createElement("span");
        p.textContent = question + " ";
        td.appendChild(p);
        td.appendChild(button("Yes", "pf-m-danger pf-m-small", () => { tr.remove(); confirmBar = null; action() }, "confirm"));
        td.appendChild(button("No", "pf-m-link pf-m-small", () => { tr.remove(); confirmBar = null }, "cancel"));
        tr.appendChild(td);
        row.after(tr);
        confirmBar = tr;
    }

    function adminRun(proc, then) {
        show("admin-error", false);
        show("admin-done", false);
        return proc
            .then((out, warning) => { (then || adminDone)(out, warning); return loadAdmin() })
            .catch(adminError);
    }

    function adminAction(args, then) {
        return adminRun(runAdmin(args), then);
    }

    function showAdminKey(user, out) {
        let k;
        try {
            const parts = String(out).split("\f");
            k = JSON.parse(parts[0]);
            if (parts.length > 1 && parts[1].indexOf("<svg") >= 0) k.qr_svg = parts[1].trim();
        } catch (e) {
            adminDone(out);
            return;
        }
        setText("admin-key-user", user);
        const secret = k.secret || "";
        setText("admin-key-groups", k.key_groups || secret.replace(/(.{4})/g, "$1 ").trim());
        setText("admin-key-uri", k.otpauth_uri);
        setText("admin-key-codes", (k.recovery_codes || []).join("  "));
        $("admin-qr").dataset.uri = k.otpauth_uri || "";
        if (k.qr_svg) $("admin-qr").src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(k.qr_svg);
        show("admin-qr", !!k.qr_svg);
        show("admin-key", true);
        show("admin-error", false);
        adminDone("New key for " + user + " (state: " + (k.state || "pending") + ").");
    }

    function renderUsers(list) {
        const body = $("users-body");
        body.textContent = "";
        confirmBar = null;
        for (const st of list) {
            const tr = document.createElement("tr");
            tr.dataset.user = st.user;
            tr.dataset.state = st.state;
            tr.appendChild(cell(st.user, "User"));
            tr.appendChild(cell(st.state, "State"));
            tr.appendChild(cell(describeRequired(st), "Required"));
            tr.appendChild(cell(describeLast(st.last_success), "Last login"));
            tr.appendChild(cell(st.recovery_codes_left == null ? "—" : st.recovery_codes_left, "Recovery codes"));
            tr.appendChild(cell(fmtTime(st.locked_until) || "—", "Locked until"));
            const td = document.createElement("td");
            td.className = "pt-row-actions";
            td.appendChild(button("Unlock", "pf-m-secondary pf-m-small",
                                  () => adminAction(["unlock", st.user, "--json"], (out, warning) => {
                                      const r = JSON.parse(out);
                                      adminDone(r.unlocked ? r.user + " is unlocked." : r.user + " was not locked.", warning);
                                  }), "unlock"));
            td.appendChild(button("New key", "pf-m-secondary pf-m-small",
                                  () => confirmThen(tr, "Replace " + st.user + "'s key? The old one stops working at once.",
                                                    () => adminRun(reenrol(st.user), out => showAdminKey(st.user, out))),
                                  "reenrol"));
            td.appendChild(button("Turn off", "pf-m-danger pf-m-small",
                                  () => confirmThen(tr, "Remove " + st.user + "'s second factor?",
                                                    () => adminAction(["disable", st.user, "--json"], (out, warning) => {
                                                        const r = JSON.parse(out);
                                                        adminDone(r.disabled ? r.user + "'s second factor is removed."
                                                            : r.user + " had no second factor.", warning);
                                                    })),
                                  "disable"));
            tr.appendChild(td);
            body.appendChild(tr);
        }
        show("users-empty", list.length === 0);
    }

    function loadUsers() {
        return runAdmin(["list", "--json"]).then(out => renderUsers(JSON.parse(out))).catch(adminError);
    }

    function loadAdmin() {
        return Promise.all([loadUsers(), loadPolicy(), loadStatus()]);
    }

    /* ---- policy ---- */
    function policyError(ex) {
        setText("policy-error-text", errText(ex));
        show("policy-error", true);
    }

    function policyEdit(args) {
        show("policy-error", false);
        // --json: the policy after the change; the CLI's warnings come on stderr
        return runAdmin(["policy"].concat(args, ["--json"]))
            .then((out, warning) => {
                renderPolicy(JSON.parse(out));
                adminDone("Saved: pam-totp policy " + args.join(" "), warning);
                return Promise.all([loadUsers(), loadStatus()]);
            })
            .catch(ex => { policyError(ex); return loadPolicy() });
    }

    function renderList(div, pol) {
        const key = div.dataset.key;
        const verb = div.dataset.verb;
        const flag = div.dataset.flag;
        div.textContent = "";
        div.classList.add("pf-c-form__group");
        const label = document.createElement("span");
        label.className = "pf-c-form__label-text";
        label.textContent = div.dataset.label;
        div.appendChild(label);
        const row = document.createElement("div");
        row.className = "pt-row";
        const values = pol[key] || [];
        if (values.length === 0) {
            const none = document.createElement("span");
            none.className = "pt-note";
            none.textContent = "none";
            row.appendChild(none);
        }
        for (const v of values) {
            const chip = document.createElement("span");
            chip.className = "pf-c-label pt-chip";
            chip.dataset.value = v;
            const t = document.createElement("span");
            t.className = "pf-c-label__content";
            t.textContent = v;
            chip.appendChild(t);
            chip.appendChild(button("×", "pf-m-plain pf-m-small", () => policyEdit(["un" + verb, flag, v]), "remove"));
            chip.lastChild.setAttribute("aria-label", "Remove " + v);
            row.appendChild(chip);
        }
        const input = document.createElement("input");
        input.className = "pf-c-form-control pt-narrow";
        input.id = "pol-" + key + "-input";
        input.placeholder = flag === "--user" ? "user name" : "group name";
        input.setAttribute("aria-label", div.dataset.label + ": add");
        row.appendChild(input);
        const add = button("Add", "pf-m-secondary", () => {
            if (input.value.trim()) policyEdit([verb, flag, input.value.trim()]);
        });
        add.id = "pol-" + key + "-add";
        row.appendChild(add);
        div.appendChild(row);
    }

    function renderPolicy(pol) {
        setText("policy-path", (pol.path || "") + (pol.exists === false ? " (not created yet: defaults)" : ""));
        $("pol-require-all").checked = !!pol.require_all;
        $("pol-enroll-at-login").checked = !!pol.enroll_at_login;
        $("pol-self-service").checked = pol.self_service !== false;
        for (const div of document.querySelectorAll(".pt-list")) renderList(div, pol);
        setText("pol-grace-now", pol.grace_until ? "now: " + fmtTime(pol.grace_until) : "now: none");
        if (pol.grace_until) $("pol-grace").value = String(pol.grace_until).slice(0, 10);
        const th = pol.throttle || {};
        $("pol-attempts").value = th.attempts == null ? "" : th.attempts;
        $("pol-lock").value = th.lock_seconds == null ? "" : th.lock_seconds;
        $("pol-max-lock").value = th.max_lock_seconds == null ? "" : th.max_lock_seconds;
        $("policy").dataset.loaded = "1";
    }

    function loadPolicy() {
        return runAdmin(["policy", "show", "--json"]).then(out => renderPolicy(JSON.parse(out))).catch(policyError);
    }

    function setupAdmin() {
        function hideAdminKey() {
            show("admin-key", false);
            setText("admin-key-groups", "");
            setText("admin-key-uri", "");
            setText("admin-key-codes", "");
            $("admin-qr").removeAttribute("src");
        }
        $("admin-key-close").addEventListener("click", hideAdminKey);
        // The code goes on the command line (`activate` reads it from a terminal otherwise):
        // visible in ps for the moment it runs, and spent by the activation.
        $("admin-activate").addEventListener("click", () => {
            const code = $("admin-activate-code").value.trim();
            $("admin-activate-code").value = "";
            if (code) {
                adminAction(["activate", $("admin-key-user").textContent, code], (out, warning) => {
                    hideAdminKey();
                    adminDone(out, warning);
                });
            }
        });
        $("pol-require-all").addEventListener("change", ev =>
            policyEdit([ev.target.checked ? "require" : "unrequire", "--all"]));
        $("pol-enroll-at-login").addEventListener("change", ev =>
            policyEdit(["enroll-at-login", ev.target.checked ? "on" : "off"]));
        $("pol-self-service").addEventListener("change", ev =>
            policyEdit(["self-service", ev.target.checked ? "on" : "off"]));
        $("pol-grace-set").addEventListener("click", () => policyEdit(["grace", "--until", $("pol-grace").value]));
        $("pol-grace-clear").addEventListener("click", () => policyEdit(["grace", "--none"]));
        $("pol-throttle-set").addEventListener("click", () => policyEdit([
            "throttle", "--attempts", $("pol-attempts").value, "--lock-seconds", $("pol-lock").value,
            "--max-lock-seconds", $("pol-max-lock").value]));
    }

    /* ---- administrative access decides whether the admin cards exist at all ---- */
    function updateAdmin(perm) {
        const on = perm.allowed === true;
        show("admin", on);
        show("policy", on);
        document.body.dataset.admin = on ? "yes" : "no";
        if (on) loadAdmin();
    }

    function init() {
        setupSelf();
        setupAdmin();
        loadStatus().then(() => { document.body.dataset.ready = "1" });
        const perm = cockpit.permission({ admin: true });
        perm.addEventListener("changed", () => updateAdmin(perm));
        if (perm.allowed !== null) updateAdmin(perm);
    }

    if (document.readyState === "loading")
        document.addEventListener("DOMContentLoaded", init);
    else
        init();
}());
