"""pam-totp's Cockpit page (cockpit/pam-totp) in a real browser: the real cockpit-ws and
cockpit-bridge, headless Chromium through chromedriver, the page installed under
/usr/share/cockpit/pam-totp inside the container only (container.sh overlays that directory),
the real pam-totp CLI and its setuid helper behind `cockpit.spawn`. Codes come from oathtool,
QR codes are read back with zbarimg from screenshots of the page.

Screenshots of the enable page, the recovery codes and the admin list, light and dark, go to
target/e2e-artefacts/ and (64 colours) to docs/img/, where README links them.

Loaded by test_e2e.py (which it imports for its helpers and scenario registry)."""

import base64
import json
import os
import re
import shutil
import subprocess
import time

from scenarios_cockpit import ARTEFACTS, WS_PORT, browser, cockpit
from test_e2e import (POLICY, REPO, STATE_DIR, TestFailure, check, new_recovery_code,
                      next_step, recovery_hash, scenario, totp, wrong_code)

PAGE_SRC = os.path.join(REPO, "cockpit", "pam-totp")
PAGE_DIR = "/usr/share/cockpit/pam-totp"
PAGE_URL = f"http://127.0.0.1:{WS_PORT}/cockpit/@localhost/pam-totp/index.html"
HELPER = "/usr/libexec/pam-totp/pam-totp-self"
DOCS_IMG = os.path.join(REPO, "docs", "img")
CODE_RE = re.compile(r"^[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{4}-[2-9a-hjkmnp-z]{4}$")


# ---------------------------------------------------------------------------------------------
# Setup


def page_ready(c, self_service=True):
    """Debian-like stacks, the page installed (inside the container), the helper's service."""
    if not os.path.isdir(PAGE_SRC):
        raise TestFailure(f"{PAGE_SRC} is missing")
    if self_service and c.run("test", "-u", HELPER, check=False).returncode != 0:
        raise TestFailure("the self-service helper is not built (cargo build --release "
                          "--workspace)")
    c.install_stacks()
    c.write_pam("pam-totp", "@include common-auth\n@include common-account\n")
    # Copied through stdin: the repository may lie under /tmp, which the container covers.
    c.run("rm", "-rf", PAGE_DIR)
    c.run("mkdir", "-p", PAGE_DIR)
    for name in sorted(os.listdir(PAGE_SRC)):
        with open(os.path.join(PAGE_SRC, name), encoding="utf-8") as f:
            c.run("sh", "-c", 'cat > "$1"', "-", os.path.join(PAGE_DIR, name), input=f.read())


def add_admin(c, name="admin"):
    """A user with administrative access: sudo without a password (Cockpit's privileged
    bridge is `sudo -k -A cockpit-bridge --privileged`), in the container's /etc only."""
    pw = c.add_user(name)
    c.run("sh", "-c", f"printf '%s\\n' '{name} ALL=(ALL:ALL) NOPASSWD: ALL' "
                      f">/etc/sudoers.d/e2e-{name} && chmod 0440 /etc/sudoers.d/e2e-{name}")
    return pw


def needs_conversation(c):
    """The self-service conversation protocol (`--conversation`) of the CLI in use."""
    r = c.run("pam-totp", "enroll", "--help", check=False)
    if "--conversation" not in r.stdout:
        raise TestFailure("this build of pam-totp has no --conversation (self-service from the "
                          "page needs it): build the workspace")


def status_json(c, user):
    return json.loads(c.pam_totp("status", user, "--json").stdout)


def record_text(c, user):
    p = c.host_path(f"{STATE_DIR}/users/{user}.toml")
    return open(p).read() if os.path.exists(p) else None


def record_secret(c, user):
    m = re.search(r'(?m)^secret\s*=\s*"([A-Z2-7]+)"', record_text(c, user) or "")
    return m and m.group(1)


# ---------------------------------------------------------------------------------------------
# The browser side


def login(ck, b, user, pw, code=None, admin=False):
    """Cockpit's login page (with a code when asked), then the pam-totp page. `code` is a string
    or a function called at the code prompt (in a step with time left: see next_step)."""
    b.open(f"http://127.0.0.1:{WS_PORT}/")
    b.wait("the login form", lambda: b.visible("#login-user-input"))
    if admin:   # ask for administrative access at login, as the shell remembers it
        b.js("window.localStorage.setItem('superuser:' + arguments[0], 'any');", user)
    b.type("#login-user-input", user)
    b.type("#login-password-input", pw)
    b.click("#login-button")
    if code is not None:
        b.wait("the code prompt", lambda: b.visible("#conversation-input"))
        if callable(code):
            next_step()
            code = code()
        b.type("#conversation-input", code)
        b.click("#login-button")
    ck.wait_logged_in(b)
    open_page(b, admin)


def open_page(b, admin=False):
    b.open(PAGE_URL)
    b.wait("the pam-totp page", lambda: b.js(
        "return !!document.body && document.body.dataset.ready === '1' && "
        "document.body.dataset.admin !== undefined;"), timeout=20)
    if admin:
        b.wait("the admin cards", lambda: b.js(
            "return document.body.dataset.admin === 'yes' && "
            "document.getElementById('policy').dataset.loaded === '1' && "
            "document.getElementById('users-body').children.length > 0;"), timeout=20)


def settled(b, what="the page to settle"):
    """No CLI run under way on the page (data-busy = 0)."""
    b.wait(what, lambda: b.js("return document.body.dataset.busy === '0';"))


def prompts(b):
    return int(b.js("return Number(document.body.dataset.prompts || 0);"))


def answer_prompt(b, seen, value, expect=None):
    """Waits for prompt number seen+1, checks its label, types the answer; returns seen+1."""
    b.wait(f"prompt {seen + 1}", lambda: prompts(b) > seen and b.visible("#prompt-input"))
    label = b.text("#prompt-label")
    if expect:
        check(re.search(expect, label or ""), f"prompt {label!r}, expected /{expect}/")
    b.type("#prompt-input", value)
    b.click("#prompt-submit")
    return seen + 1


def flow_result(b, timeout=20):
    b.wait("the result of the conversation", lambda: b.visible("#flow-result"), timeout=timeout)
    cls = b.js("return document.getElementById('flow-result').className;")
    return ("pf-m-success" in cls), b.text("#flow-result-text"), b.text("#flow-result-hint")


def start(b, button):
    b.wait(f"the {button} button", lambda: b.visible(f"#{button}"))
    b.click(f"#{button}")


def set_theme(b, style):
    """What Cockpit's shell does when the user picks a style: localStorage + an event."""
    b.js("window.localStorage.setItem('shell:style', arguments[0]);"
         "window.dispatchEvent(new CustomEvent('cockpit-style', {detail: {style: arguments[0]}}));",
         style)
    dark = b.js("return document.documentElement.classList.contains('pf-theme-dark');")
    check(dark == (style == "dark"), f"theme {style}: pf-theme-dark is {dark}")
    time.sleep(0.2)


def element_png(b, css):
    el = b.find(css)
    return base64.b64decode(b.call("GET", f"/element/{el}/screenshot"))


def shoot(b, css, name, docs=True):
    """A screenshot of one element: target/e2e-artefacts/NAME.png and docs/img/NAME.png
    (64 colours)."""
    os.makedirs(ARTEFACTS, exist_ok=True)
    path = os.path.join(ARTEFACTS, f"{name}.png")
    b.js("document.querySelector(arguments[0]).scrollIntoView({block: 'start'});", css)
    time.sleep(0.1)
    with open(path, "wb") as f:
        f.write(element_png(b, css))
    if docs:
        os.makedirs(DOCS_IMG, exist_ok=True)
        out = os.path.join(DOCS_IMG, f"{name}.png")
        if shutil.which("convert"):
            subprocess.run(["convert", path, "-strip", "+dither", "-colors", "64", f"PNG8:{out}"],
                           check=True, capture_output=True)
        else:
            shutil.copyfile(path, out)
    return path


def shoot_both(b, css, name):
    for style in ("light", "dark"):
        set_theme(b, style)
        shoot(b, css, f"{name}-{style}")
    set_theme(b, "light")


def decode_qr(png_path):
    r = subprocess.run(["zbarimg", "--raw", "-q", png_path], capture_output=True, text=True)
    check(r.returncode == 0, f"zbarimg read no QR code from {png_path}: {r.stderr}")
    return r.stdout.strip()


def spawn_in_page(b, argv, superuser=None):
    """cockpit.spawn from the page's own JavaScript: {ok, out} or {ok: false, problem, message,
    exit_status}."""
    script = """
        const done = arguments[arguments.length - 1];
        const opts = {err: 'message'};
        if (arguments[1]) opts.superuser = arguments[1];
        cockpit.spawn(arguments[0], opts)
            .then(out => done({ok: true, out: out}))
            .catch(ex => done({ok: false, problem: ex.problem || null,
                               message: ex.message || null,
                               exit_status: ex.exit_status === undefined ? null
                                                                          : ex.exit_status}));
    """
    return b.call("POST", "/execute/async", {"script": script, "args": [argv, superuser]},
                  timeout=30)


# What the page shows for a status object: the same words as pam-totp.js (presentation only).
def fmt_time(iso):
    return iso.replace("T", " ").replace("Z", " UTC") if iso else None


def shown_status(st):
    t = (f"TOTP, {st['algorithm']}, {st['digits']} digits, {st['period']} s"
         if st.get("algorithm") else "—")
    req = "no"
    if st.get("required"):
        req = f"yes ({st.get('required_by') or 'policy'})"
        if st.get("grace_until"):
            req += f", grace until {fmt_time(st['grace_until'])}"
    ls = st.get("last_success")
    last = (f"{fmt_time(ls['time'])} from {ls.get('rhost') or 'this machine (no remote host)'}"
            if ls else "never")
    off = st.get("clock_offset_seconds")
    if off is None:
        clock = "not known yet (no login with a code)"
    elif off == 0:
        clock = "in time (offset 0 s)"
    else:
        clock = (f"{-off} s behind" if off < 0 else f"{off} s ahead") + \
            f" (offset {off} s); turn on automatic time on the phone"
    left = st.get("recovery_codes_left")
    return {"st-state": st["state"], "st-type": t, "st-created": fmt_time(st.get("created")) or "—",
            "st-last": last, "st-recovery": "—" if left is None else str(left),
            "st-required": req, "st-locked": fmt_time(st.get("locked_until")) or "not locked",
            "st-clock": clock}


def page_status(b):
    return b.js("const o = {}; for (const dd of document.querySelectorAll('#status dd'))"
                " o[dd.id] = dd.textContent.trim(); return o;")


def alice_enrolled(c, recovery=()):
    pw = c.add_user("alice")
    return pw, c.enrol("alice", recovery=[recovery_hash(r) for r in recovery])


# ---------------------------------------------------------------------------------------------
# Scenarios


@scenario("cockpit-login-with-code", needs_cli=True)
def _(c):
    page_ready(c, self_service=False)
    with cockpit(c) as ck:
        pw, secret = alice_enrolled(c)
        with browser(ck) as b:
            login(ck, b, "alice", pw, code=totp(secret))
            b.wait("alice's status on the page", lambda: b.text("#st-state") == "active")
            # in Cockpit's shell: a menu entry, and the page in its frame
            b.open(f"http://127.0.0.1:{WS_PORT}/pam-totp")
            b.wait("the menu entry", lambda: b.js(
                "return [...document.querySelectorAll('nav a')].some(a => "
                "a.getAttribute('href') === '/pam-totp' && "
                "a.textContent.trim() === 'Two-factor login');"))
            frame = b.wait("the page's frame", lambda: b.js(
                "const f = document.querySelector(\"iframe[name='cockpit1:localhost/pam-totp']\");"
                "return f && f.contentDocument && f.contentDocument.body &&"
                " f.contentDocument.body.dataset.ready === '1' &&"
                " f.contentDocument.getElementById('st-state').textContent;"))
            check(frame == "active", f"state in the shell's frame: {frame!r}")
            shoot(b, "body", "cockpit-shell")
            # the shell's style (Session menu > Style) reaches the page in its frame
            b.js("window.localStorage.setItem('shell:style', 'dark');")
            b.wait("the dark theme in the page's frame", lambda: b.js(
                "const f = document.querySelector(\"iframe[name='cockpit1:localhost/pam-totp']\");"
                "return f.contentDocument.documentElement.classList.contains('pf-theme-dark');"))
            b.js("window.localStorage.setItem('shell:style', 'light');")
            b.wait("the light theme in the page's frame", lambda: b.js(
                "const f = document.querySelector(\"iframe[name='cockpit1:localhost/pam-totp']\");"
                "return !f.contentDocument.documentElement.classList.contains('pf-theme-dark');"))
        with browser(ck) as b:
            prompt = ck.login_to_code_prompt(b, "alice", pw)
            check("code" in prompt.lower(), f"code prompt {prompt!r}")
            ck.answer_code(b, wrong_code(secret))
            err = ck.wait_error(b)
            check(not b.session_cookie(), f"a session after a wrong code ({err!r})")


@scenario("cockpit-status", needs_cli=True)
def _(c):
    page_ready(c, self_service=False)
    c.write_policy("version = 1\nrequire_users = [\"alice\"]\n"
                   "grace_until = 2099-12-31T00:00:00Z\n")
    with cockpit(c) as ck, browser(ck) as b:
        pw, secret = alice_enrolled(c, recovery=[new_recovery_code() for _ in range(3)])
        login(ck, b, "alice", pw, code=lambda: totp(secret, offset_steps=-1))   # phone 30 s behind
        b.wait("the status", lambda: b.text("#st-state") == "active")
        want = shown_status(status_json(c, "alice"))
        got = page_status(b)
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        check(not diff, f"page vs `pam-totp status --json` (page, CLI): {diff}")
        check(want["st-last"] != "never" and want["st-recovery"] == "3" and
              want["st-required"].startswith("yes (require_users)") and
              want["st-clock"].startswith("30 s behind"), f"status: {want}")


@scenario("cockpit-self-enrol", needs_cli=True)
def _(c):
    page_ready(c)
    needs_conversation(c)
    with cockpit(c) as ck, browser(ck) as b:
        pw = c.add_user("alice")
        login(ck, b, "alice", pw)
        b.wait("state none", lambda: b.text("#st-state") == "none")
        start(b, "enable")
        seen = answer_prompt(b, 0, pw, expect="(?i)password")
        b.wait("the new key", lambda: b.visible("#key") and b.js(
            "return !!document.getElementById('qr').getAttribute('src');"))
        account, issuer = b.text("#key-account"), b.text("#key-issuer")
        key = b.text("#key-groups")
        check(re.fullmatch(r"([A-Z2-7]{4} )*[A-Z2-7]{1,4}", key), f"key in groups of 4: {key!r}")
        check(account == "alice" and issuer, f"account {account!r}, issuer {issuer!r}")
        check(b.text("#key-type") == "TOTP, SHA1, 6 digits, 30 s", b.text("#key-type"))
        secret = key.replace(" ", "")
        uri = decode_qr(shoot(b, "#qr", "cockpit-page-qr", docs=False))
        want = (f"otpauth://totp/{issuer}:alice?secret={secret}&issuer={issuer}"
                "&algorithm=SHA1&digits=6&period=30")
        check(uri == want, f"QR code on the page: {uri!r}, expected {want!r}")
        rec = record_text(c, "alice") or ""
        check('state = "active"' not in rec, "an active record before the code from the app")
        b.wait("the code prompt", lambda: prompts(b) > seen and b.visible("#prompt-input"))
        check(b.visible("#test-hint") and b.text("#prompt-submit") == "Activate",
              "no 'enter a code to test' and Activate after the new key")
        check(not b.visible("#codes"), "recovery codes shown before the key is activated")
        shoot_both(b, "#flow", "cockpit-enable")
        b.viewport(360, 740)   # usable on a phone: nothing wider than the screen
        width = b.js("return document.documentElement.scrollWidth;")
        shoot(b, "body", "cockpit-enable-360px", docs=False)
        check(width <= 360, f"the page is {width} px wide at a 360 px viewport")
        b.viewport(1000, 700)
        seen = answer_prompt(b, seen, wrong_code(secret), expect="(?i)code")
        seen = answer_prompt(b, seen, totp(secret), expect="(?i)code")
        b.wait("the recovery codes", lambda: b.visible("#codes"))
        codes = b.js("return Array.from(document.querySelectorAll('#codes-list li'))"
                     ".map(li => li.textContent.trim());")
        check(len(codes) == 10 and all(CODE_RE.match(x) for x in codes), f"codes {codes}")
        ok, msg, _ = flow_result(b)
        check(ok, f"enrolment failed on the page: {msg}")
        check(not b.visible("#key"), "the key is still shown after activation")
        shoot_both(b, "#flow", "cockpit-recovery-codes")
        b.click("#codes-copy")
        b.wait("'Copied.'", lambda: b.visible("#codes-copied"))
        st = status_json(c, "alice")
        check(st["state"] == "active" and st["recovery_codes_left"] == 10, f"status {st}")
        check(record_secret(c, "alice") == secret, "the record's key is not the one shown")
        b.wait("the status card", lambda: b.text("#st-state") == "active")
        b.click("#flow-close")
        open_page(b)   # shown once: a reload shows no codes and no key
        check(not b.visible("#codes") and not b.visible("#key") and
              b.js("return document.getElementById('codes-list').children.length;") == 0,
              "recovery codes or key still shown after a reload")


@scenario("cockpit-renew-recovery", needs_cli=True)
def _(c):
    page_ready(c)
    needs_conversation(c)
    with cockpit(c) as ck, browser(ck) as b:
        pw, secret = alice_enrolled(c, recovery=[new_recovery_code()])
        before = record_text(c, "alice")
        login(ck, b, "alice", pw, code=totp(secret))
        next_step()
        start(b, "renew")
        seen = answer_prompt(b, 0, pw, expect="(?i)password")
        answer_prompt(b, seen, totp(secret, offset_steps=1), expect="(?i)code")
        b.wait("the new recovery codes", lambda: b.visible("#codes"))
        codes = b.js("return Array.from(document.querySelectorAll('#codes-list li'))"
                     ".map(li => li.textContent.trim());")
        ok, msg, _ = flow_result(b)
        check(ok, f"renewal failed: {msg}")
        check(len(codes) == 10 and all(CODE_RE.match(x) for x in codes), f"codes {codes}")
        st = status_json(c, "alice")
        check(st["recovery_codes_left"] == 10, f"status {st}")
        check(record_text(c, "alice") != before, "the record did not change")
        b.wait("the status card", lambda: b.text("#st-recovery") == "10")


@scenario("cockpit-disable-with-code", needs_cli=True)
def _(c):
    page_ready(c)
    needs_conversation(c)
    with cockpit(c) as ck, browser(ck) as b:
        pw, secret = alice_enrolled(c)
        login(ck, b, "alice", pw, code=totp(secret))
        next_step()
        start(b, "disable")
        seen = answer_prompt(b, 0, pw, expect="(?i)password")
        answer_prompt(b, seen, totp(secret, offset_steps=1), expect="(?i)code")
        ok, msg, _ = flow_result(b)
        check(ok, f"disable failed: {msg}")
        check(record_text(c, "alice") is None, "the record is still there")
        check(status_json(c, "alice")["state"] == "none", "status is not none")
        b.wait("the status card", lambda: b.text("#st-state") == "none" and b.visible("#enable"))


@scenario("cockpit-disable-refused-when-required", needs_cli=True)
def _(c):
    page_ready(c)
    needs_conversation(c)
    c.write_policy("version = 1\nrequire_users = [\"alice\"]\n")
    with cockpit(c) as ck, browser(ck) as b:
        pw, secret = alice_enrolled(c)
        login(ck, b, "alice", pw, code=totp(secret))
        next_step()
        start(b, "disable")
        seen = answer_prompt(b, 0, pw, expect="(?i)password")
        # The CLI may refuse before or after the code: answer one if it is asked.
        b.wait("a code prompt or the result",
               lambda: b.visible("#flow-result") or prompts(b) > seen)
        if not b.visible("#flow-result"):
            answer_prompt(b, seen, totp(secret, offset_steps=1), expect="(?i)code")
        ok, msg, hint = flow_result(b)
        check(not ok, f"disable was not refused: {msg}")
        check("require" in f"{msg} {hint}".lower(), f"the reason does not name the rule: {msg}")
        check(record_secret(c, "alice") == secret, "the record changed")
        check(b.text("#st-state") == "active", "the page no longer says active")


@scenario("cockpit-admin-list-unlock", needs_cli=True)
def _(c):
    page_ready(c, self_service=False)
    c.write_policy("version = 1\nrequire_users = [\"bob\"]\n\n[throttle]\nattempts = 1\n"
                   "lock_seconds = 600\nmax_lock_seconds = 3600\n")
    with cockpit(c) as ck:
        apw = add_admin(c)
        pw, secret = alice_enrolled(c)
        c.add_user("bob")
        bob_codes = [recovery_hash(new_recovery_code()) for _ in range(8)]
        bob_secret = c.enrol("bob", recovery=bob_codes)
        with browser(ck) as b:   # one wrong code locks alice (attempts = 1)
            ck.login_to_code_prompt(b, "alice", pw)
            ck.answer_code(b, wrong_code(secret))
            ck.wait_error(b)
        check(status_json(c, "alice")["locked_until"], "alice is not locked")
        with browser(ck) as b:
            login(ck, b, "admin", apw, admin=True)
            rows = b.js("return Array.from(document.querySelectorAll('#users-body tr'))"
                        ".map(tr => [tr.dataset.user, tr.dataset.state]);")
            check(sorted(rows) == [["alice", "locked"], ["bob", "active"]], f"rows {rows}")
            shoot_both(b, "#admin", "cockpit-admin-list")
            b.click("#users-body tr[data-user='alice'] [data-action='unlock']")
            b.wait("alice unlocked in the list", lambda: b.js(
                "const r = document.querySelector(\"#users-body tr[data-user='alice']\");"
                "return r && r.dataset.state === 'active';"))
            check(status_json(c, "alice")["locked_until"] is None, "alice still locked")
            b.click("#users-body tr[data-user='bob'] [data-action='reenrol']")
            b.wait("the confirmation", lambda: b.visible("tr.pt-confirm [data-action='confirm']"))
            b.click("tr.pt-confirm [data-action='confirm']")
            b.wait("bob's new key", lambda: b.visible("#admin-key") and b.text("#admin-key-uri"))
            uri = b.text("#admin-key-uri")
            new = record_secret(c, "bob")
            check(new and new != bob_secret and f"secret={new}&" in uri, f"new key {uri!r}")
            qr = decode_qr(shoot(b, "#admin-qr", "cockpit-admin-qr", docs=False))
            check(qr == uri, f"the admin's QR code {qr!r} is not the URI shown {uri!r}")
            st = status_json(c, "bob")
            check(st["state"] == "pending", f"bob after re-enrolment: {st}")
            b.wait("bob pending in the list", lambda: b.js(
                "const r = document.querySelector(\"#users-body tr[data-user='bob']\");"
                "return r && r.dataset.state === 'pending';"))
            settled(b)
            b.type("#admin-activate-code", totp(new))
            b.click("#admin-activate")
            b.wait("bob active again", lambda: b.js(
                "const r = document.querySelector(\"#users-body tr[data-user='bob']\");"
                "return r && r.dataset.state === 'active';"))
            check(status_json(c, "bob")["state"] == "active", "bob is not active")
            check(not b.visible("#admin-key"), "bob's key still shown after the activation")
            settled(b)
            b.click("#users-body tr[data-user='alice'] [data-action='disable']")
            b.click("tr.pt-confirm [data-action='confirm']")
            b.wait("alice gone from the list", lambda: b.js(
                "return !document.querySelector(\"#users-body tr[data-user='alice']\");"))
            check(record_text(c, "alice") is None, "alice's record is still there")
            check(b.text("#admin-done-text") == "alice's second factor is removed.",
                  f"message {b.text('#admin-done-text')!r}")


@scenario("cockpit-admin-policy", needs_cli=True)
def _(c):
    page_ready(c, self_service=False)
    original = ("# e2e policy: this comment must survive edits made from the page\n"
                "version = 1\n"
                "require_users = []   # nobody by name\n")
    c.write_policy(original)
    c.start_sshd()
    with cockpit(c) as ck, browser(ck) as b:
        apw = add_admin(c)
        cpw = c.add_user("carol")
        c.append("/etc/group", "pt-staff:x:3999:carol\n")   # a supplementary group
        c.append("/etc/gshadow", "pt-staff:!::carol\n")
        s = c.ssh("carol", password=cpw)
        check(s.ran("LOGGED-IN-carol") and len(s.prompts) == 1, f"carol before: {s}")
        # the admin list waits for a row: give bob a record
        c.add_user("bob")
        c.enrol("bob")
        login(ck, b, "admin", apw, admin=True)
        b.type("#pol-require_groups-input", "pt-staff")
        b.click("#pol-require_groups-add")
        b.wait("pt-staff in the required groups", lambda: b.js(
            "return !!document.querySelector(\"[data-key='require_groups'] "
            "[data-value='pt-staff']\");"))
        b.click("#pol-enroll-at-login")
        b.wait("enrol at login on", lambda: b.js(
            "return document.getElementById('pol-enroll-at-login').checked;") and
            "enroll_at_login = true" in c.read(POLICY))
        settled(b)
        text = c.read(POLICY)
        check(re.search(r'(?m)^require_groups\s*=\s*\["pt-staff"\]', text), f"policy:\n{text}")
        for line in original.splitlines():
            if "#" in line:
                check(line.split("#", 1)[1] in text, f"comment lost:\n{text}")
        # the CLI's warning (a group that does not exist yet) is shown as it is
        settled(b)
        b.type("#pol-exempt_groups-input", "pt-nosuch")
        b.click("#pol-exempt_groups-add")
        b.wait("the CLI's warning", lambda: b.visible("#admin-done-warning"))
        r = c.pam_totp("policy", "exempt", "--group", "pt-nosuch2", "--json")
        check(b.text("#admin-done-warning") == r.stderr.strip().replace("pt-nosuch2", "pt-nosuch"),
              f"page {b.text('#admin-done-warning')!r} vs CLI {r.stderr.strip()!r}")
        settled(b)
        # a refused edit shows the CLI's message as it is
        b.type("#pol-attempts", "0")
        b.click("#pol-throttle-set")
        b.wait("the CLI's error", lambda: b.visible("#policy-error"))
        r = c.pam_totp("policy", "throttle", "--attempts", "0", "--lock-seconds", "60",
                       "--max-lock-seconds", "3600", check=False)
        check(r.returncode != 0 and b.text("#policy-error-text") == r.stderr.strip(),
              f"page {b.text('#policy-error-text')!r} vs CLI {r.stderr.strip()!r}")
        # the next ssh login of a member is asked for a code (enrolling at login: the key is
        # shown first; a code from it logs her in)

        def code_from_shown_key(transcript):
            return totp(re.findall(r"secret=([A-Z2-7]+)", transcript)[-1])

        s = c.converse(c.ssh_argv("carol"), [("Password:", cpw),
                                             ("Verification code:", code_from_shown_key)])
        check(s.prompts == ["Password:", "Verification code:"] and s.ran("LOGGED-IN-carol"),
              f"carol after requiring pt-staff: {s}")


@scenario("cockpit-user-cannot-admin", needs_cli=True)
def _(c):
    page_ready(c, self_service=False)
    with cockpit(c) as ck, browser(ck) as b:
        pw, secret = alice_enrolled(c)
        c.add_user("bob")
        c.enrol("bob")
        login(ck, b, "alice", pw, code=totp(secret))
        check(b.js("return document.body.dataset.admin;") == "no", "admin mode for alice")
        for css in ("#admin", "#policy", "[data-action='unlock']", "#pol-require-all"):
            check(not b.visible(css), f"{css} visible to a plain user")
        r = spawn_in_page(b, ["pam-totp", "list", "--json"], "require")
        check(not r["ok"] and r["problem"] == "access-denied", f"superuser spawn: {r}")
        r = spawn_in_page(b, ["pam-totp", "unlock", "bob"])
        check(not r["ok"] and "only root" in (r["message"] or ""), f"unlock as alice: {r}")
        r = spawn_in_page(b, ["pam-totp", "policy", "require", "--all"])
        check(not r["ok"] and "only root" in (r["message"] or ""), f"policy as alice: {r}")
        check("require_all = true" not in (c.read(POLICY) if os.path.exists(
            c.host_path(POLICY)) else ""), "the policy changed")
