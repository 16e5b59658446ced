-- pam-totp fleet store, migration 002: the offline report of break-glass users, and the
-- recovery-replay rule made equal to file mode's (SPEC §11; fleet/README.md).
--
-- Applied as 001 says (superuser, in one transaction, after 001). Adds:
--   * pam_totp.report_offline(user, step, burned entries): what a host let a break-glass user
--     in with while the store was unreachable (from its local record), reported at the next
--     contact: last_step raised (bounded by the server's clock), those recovery codes burned.
--   * pam_totp.check(user, answer, rhost, window, shown_at): a burned recovery code is a replay
--     (not counted) only when it was burned at or after shown_at — the db_time `enrolment`
--     returned before this login's prompt, i.e. by a login concurrent with this one — and
--     within settings.recovery_replay_seconds; else it is a wrong code (counted), as in file
--     mode. recovery_replay_seconds = 0 now means "never" (001 kept a code burned within the
--     same second). The 4-argument check stays for hosts not upgraded yet (shown_at unknown:
--     any burn within recovery_replay_seconds).
-- Hosts need this migration before their module is upgraded (the module calls the 5-argument
-- check and report_offline).

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'pam-totp: migrations must be applied by a superuser';
    END IF;
    IF to_regclass('pam_totp.schema_version') IS NULL THEN
        RAISE EXCEPTION 'pam-totp: migration 002 needs 001 first';
    END IF;
    IF EXISTS (SELECT 1 FROM pam_totp.schema_version WHERE version >= 2) THEN
        RAISE EXCEPTION 'pam-totp: migration 002 is already applied';
    END IF;
END $$;

SET ROLE pam_totp_owner;

-- ---------------------------------------------------------------------------------------
-- check with shown_at. Its body is 001's check with three edits, made here on the stored
-- source (each must match exactly once, or the migration fails): the judging code is written
-- once, in 001, and this file says only what changes.
-- ---------------------------------------------------------------------------------------
DO $$
DECLARE
    v_body text;
    v_edit text[];
    v_edits text[] := ARRAY[
        -- recovery_replay_seconds = 0: a burned entry is dropped at once (001: '>=').
        ARRAY[$e$OR (e ->> 'b')::bigint >= v_now - s.recovery_replay_seconds;$e$,
              $e$OR (e ->> 'b')::bigint > v_now - s.recovery_replay_seconds;$e$],
        -- each entry's burn time, beside live and ok
        ARRAY[$e$jsonb_typeof(e -> 'b') = 'null' AS live,$e$,
              $e$jsonb_typeof(e -> 'b') = 'null' AS live, (e ->> 'b')::bigint AS burned_at,$e$],
        -- a replay only when burned at or after this login's prompt was shown
        ARRAY[$e$coalesce(bool_or(ok AND NOT live), false)$e$,
              $e$coalesce(bool_or(ok AND NOT live AND burned_at >= coalesce(p_shown_at, 0)), false)$e$]];
BEGIN
    SELECT prosrc INTO v_body FROM pg_proc
    WHERE oid = 'pam_totp.check(text, text, text, integer)'::regprocedure;
    FOREACH v_edit SLICE 1 IN ARRAY v_edits LOOP
        IF (length(v_body) - length(replace(v_body, v_edit[1], ''))) / length(v_edit[1]) <> 1 THEN
            RAISE EXCEPTION 'pam-totp: migration 002: pam_totp.check is not 001''s (% not found once)',
                v_edit[1];
        END IF;
        v_body := replace(v_body, v_edit[1], v_edit[2]);
    END LOOP;
    EXECUTE format('CREATE FUNCTION pam_totp.check(p_user text, p_answer text, p_rhost text, '
        'p_window integer, p_shown_at bigint) RETURNS uuid LANGUAGE plpgsql VOLATILE '
        'SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp AS %L', v_body);
END $$;
COMMENT ON FUNCTION pam_totp.check(text, text, text, integer, bigint) IS
'Host. check(user, answer, rhost, window, shown_at) -> ticket (uuid); then outcome(ticket) in a '
'later transaction. As the 4-argument check (migration 001), except for a recovery code that is '
'already burned: recovery_replay (not counted) only when it was burned at or after shown_at (the '
'db_time that enrolment returned before this login''s prompt: burned by a concurrent login) and '
'less than settings.recovery_replay_seconds ago (0: never); otherwise wrong (counted), as in file '
'mode. shown_at NULL: any burn within recovery_replay_seconds.';

-- The 4-argument check, for hosts whose module is older: the same, shown_at unknown.
CREATE OR REPLACE FUNCTION pam_totp.check(p_user text, p_answer text, p_rhost text, p_window integer)
RETURNS uuid
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$ SELECT pam_totp.check(p_user, p_answer, p_rhost, p_window, NULL::bigint) $$;
COMMENT ON FUNCTION pam_totp.check(text, text, text, integer) IS
'Host (modules before migration 002). check(user, answer, rhost, window) = check(user, answer, '
'rhost, window, NULL): a recovery code burned less than settings.recovery_replay_seconds ago is '
'a replay whenever it was burned. Call it in autocommit, then outcome(ticket).';

-- ---------------------------------------------------------------------------------------
-- report_offline
-- ---------------------------------------------------------------------------------------
CREATE TYPE pam_totp.offline_result AS (
    applied_step bigint,  -- the user's last_step after the report (NULL: still none)
    burned integer        -- live recovery codes this report burned
);

CREATE FUNCTION pam_totp.report_offline(p_user text, p_step bigint, p_burned text[])
RETURNS pam_totp.offline_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    u pam_totp.users%ROWTYPE;
    r pam_totp.offline_result;
    v_now bigint;
    v_step bigint;
    v_key text;
    v_list jsonb;
    v_burned text[];
BEGIN
    r.burned := 0;
    SELECT * INTO u FROM pam_totp.users WHERE name = p_user FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pam_totp.audit_log(p_user, NULL, 'offline_report',
            'offline logins reported for a user without a record: nothing applied');
        RETURN r;
    END IF;
    v_now := pam_totp.now_s();
    -- Bounded by the server's clock (a far-future step is clamped to the next step), never
    -- lowered.
    v_step := least(p_step, v_now / u.period + 1);
    IF v_step < 0 THEN
        v_step := NULL;
    END IF;
    r.applied_step := greatest(u.last_step, v_step);
    v_key := pam_totp.key();
    v_burned := ARRAY(SELECT DISTINCT lower(b) FROM unnest(p_burned) AS b WHERE b IS NOT NULL);
    SELECT coalesce(jsonb_agg(CASE WHEN hit THEN jsonb_set(e, '{b}', to_jsonb(v_now)) ELSE e END
                              ORDER BY i), '[]'::jsonb),
           count(*) FILTER (WHERE hit)
    INTO v_list, r.burned
    FROM (SELECT e, i, jsonb_typeof(e -> 'b') = 'null' AND lower(e ->> 'h') = ANY (v_burned) AS hit
          FROM jsonb_array_elements(pam_totp.recovery_list(u.recovery, v_key))
               WITH ORDINALITY AS a (e, i)) t;
    UPDATE pam_totp.users
    SET last_step = r.applied_step,
        recovery = pam_totp.encrypt_secret(convert_to(v_list::text, 'UTF8'), v_key)
    WHERE name = p_user;
    PERFORM pam_totp.audit_log(p_user, NULL, 'offline_report',
        format('offline logins reported: %s, %s recovery codes burned; last step %s',
               CASE WHEN v_step IS NULL THEN 'no step'
                    WHEN v_step = p_step THEN format('step %s', v_step)
                    ELSE format('step %s (clamped from %s)', v_step, p_step) END,
               r.burned, coalesce(r.applied_step::text, 'none')));
    RETURN r;
END $$;
COMMENT ON FUNCTION pam_totp.report_offline(text, bigint, text[]) IS
'Host. report_offline(user, step, burned) -> (applied_step, burned): what this host let a '
'break-glass user in with from its local record while the store was unreachable ([offline] '
'mode = "local"). Locks the user''s row; last_step = max(last_step, least(step, current step + '
'1)) (a far-future step is clamped, last_step never lowered; step NULL: none); each burned '
'entry (a §4 entry sha256:<salt>:<hash>) equal to a live recovery entry of the user burns it '
'(burn time now). One audit row (outcome offline_report, host = session_user). No user: nothing '
'changes (audited). Returns the resulting last_step and how many codes it burned; never a '
'secret or a hash.';

REVOKE ALL ON FUNCTION pam_totp.report_offline(text, bigint, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION pam_totp.check(text, text, text, integer, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pam_totp.report_offline(text, bigint, text[]) TO pam_totp_host;
GRANT EXECUTE ON FUNCTION pam_totp.check(text, text, text, integer, bigint) TO pam_totp_host;

INSERT INTO pam_totp.schema_version (version, name) VALUES (2, '002_offline');
RESET ROLE;
