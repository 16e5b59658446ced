-- pam-totp fleet store, migration 003: two host-side holes closed (found in review).
--
-- Applied as 001 says (superuser, in one transaction, after 002). Changes:
--   * pam_totp.enrolment refuses to answer on a server in recovery (a standby), with SQLSTATE
--     25006 (read_only_sql_transaction) like a write would: the client then tries the next
--     address. Before, a lagging standby listed first could say 'none' for a user who is
--     active on the primary (and the per-host policy might then let the user in without a
--     code).
--   * pam_totp.check (5 arguments) runs only as the first thing that writes in its
--     transaction: a host that ran `BEGIN; check(wrong); check(guess); ROLLBACK` could tell
--     from the second call's work (a locked user is not judged) whether the first guess was
--     right, and roll the count back — the unlimited guessing the check/outcome split exists
--     to prevent. Now the second call raises. (The 4-argument check calls this one.)

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'pam-totp: migrations must be applied by a superuser';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pam_totp.schema_version WHERE version = 2) THEN
        RAISE EXCEPTION 'pam-totp: migration 003 needs 002 first';
    END IF;
    IF EXISTS (SELECT 1 FROM pam_totp.schema_version WHERE version >= 3) THEN
        RAISE EXCEPTION 'pam-totp: migration 003 is already applied';
    END IF;
END $$;

SET ROLE pam_totp_owner;

CREATE OR REPLACE FUNCTION pam_totp.enrolment(p_user text) RETURNS pam_totp.enrolment_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    u pam_totp.users%ROWTYPE;
    r pam_totp.enrolment_result;
BEGIN
    IF pg_is_in_recovery() THEN
        RAISE EXCEPTION 'pam-totp: this server is a standby; ask the primary'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    SELECT * INTO u FROM pam_totp.users WHERE name = p_user;
    r.db_time := pam_totp.now_s();
    IF NOT FOUND OR (u.status = 'pending' AND NOT u.replaces_active) THEN
        r.enrolment := 'none';
    ELSIF u.status = 'active' THEN
        r.enrolment := 'active';
        r.digits := u.digits;
    ELSE
        r.enrolment := 'pending_replacement';
        r.digits := u.digits;
    END IF;
    RETURN r;
END $$;

-- check: one guard at the top of its body (an edit of the stored source that must match
-- exactly once, as in 002, so that the judging code stays written once, in 001).
DO $$
DECLARE
    v_body text;
    v_from text := $e$BEGIN
    -- Serialise every check of this user$e$;
    v_to text := $e$BEGIN
    -- One check per transaction, and nothing written before it in that transaction.
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'pam-totp: check must run in a transaction of its own (autocommit)';
    END IF;
    -- Serialise every check of this user$e$;
BEGIN
    SELECT prosrc INTO v_body FROM pg_proc
    WHERE oid = 'pam_totp.check(text, text, text, integer, bigint)'::regprocedure;
    IF (length(v_body) - length(replace(v_body, v_from, ''))) / length(v_from) <> 1 THEN
        RAISE EXCEPTION 'pam-totp: migration 003: pam_totp.check is not 002''s';
    END IF;
    EXECUTE format('CREATE OR REPLACE FUNCTION pam_totp.check(p_user text, p_answer text, '
        'p_rhost text, p_window integer, p_shown_at bigint) RETURNS uuid LANGUAGE plpgsql '
        'VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp AS %L',
        replace(v_body, v_from, v_to));
END $$;

INSERT INTO pam_totp.schema_version (version, name) VALUES (3, '003_hardening');
RESET ROLE;
