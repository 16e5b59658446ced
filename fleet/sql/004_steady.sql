-- pam-totp fleet store, migration 004: the same answers at a lower cost per login, and no
-- waiting between checks once the store has run for a while (found measuring issue 18's
-- 500 logins/s).
--
-- Applied as 001 says (superuser, in one transaction, after 003). Changes:
--   * The internal helpers written in SQL (decrypt_secret, matching_step, recovery_list, ...)
--     become PL/pgSQL functions with the very same query: PostgreSQL parses and plans a SQL
--     function that it cannot inline on every call, PL/pgSQL keeps the plan for the session —
--     a host's agent keeps its session. Each body `SELECT <rest>` becomes `RETURN <rest>;`:
--     PL/pgSQL runs a RETURN expression as the query `SELECT <rest>`, so the query is the stored
--     one, character for character; without a FROM it is evaluated without the executor. A
--     query that yielded several rows would now raise instead of answering with the first; none
--     of these can (aggregates, or one row). The helpers lose their own `SET search_path`: they
--     are not SECURITY DEFINER, nobody but the owner may execute them, and every function that
--     calls them pins search_path (fleet/README.md); setting it again on each of a dozen calls
--     per check was a tenth of the check's time. Volatility and strictness are kept; the one
--     untyped argument a function of another schema could win ('UTF8' of convert_to and
--     convert_from) is typed as pg_catalog.name.
--     (`pam_totp.check` itself: from ~1.0 to ~0.65 ms of server time per call; BENCHMARKS.md.)
--   * check removes expired outcomes (older than 600 s) without waiting: at most 32 per call,
--     skipping rows that a concurrent check is removing. It removed every expired row, so once
--     a second (created is in seconds) each concurrent check waited for the first one's commit
--     — and its standby flush — to delete the same rows.
--   * pam_totp.users keeps half of each page free (fillfactor 50): each judged answer rewrites
--     the user's row, and with room on its page the new version stays there (a HOT update: no
--     new index entry, the old version pruned in passing) instead of leaving work for vacuum.
--     Rows written from now on; `VACUUM FULL pam_totp.users` repacks the others (it locks the
--     table: in a quiet moment).

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'pam-totp: migrations must be applied by a superuser';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pam_totp.schema_version WHERE version = 3) THEN
        RAISE EXCEPTION 'pam-totp: migration 004 needs 003 first';
    END IF;
    IF EXISTS (SELECT 1 FROM pam_totp.schema_version WHERE version >= 4) THEN
        RAISE EXCEPTION 'pam-totp: migration 004 is already applied';
    END IF;
END $$;

-- Names in this file resolve in pg_catalog and pam_totp only, whatever the session's path.
SET LOCAL search_path = pg_catalog, pam_totp, pg_temp;
SET ROLE pam_totp_owner;

-- The helpers: PL/pgSQL, the same query.
DO $$
DECLARE
    v_names text[] := ARRAY['key_id_of', 'encrypt_secret', 'decrypt_secret', 'code_at',
        'matching_step', 'now_s', 'rfc3339', 'locked_until_after', 'recovery_match',
        'recovery_normalize', 'recovery_list', 'recovery_left', 'audit_log'];
    f record;
    v_src text;
    v_notes text;
    v_n integer := 0;
BEGIN
    FOR f IN SELECT p.oid, p.proname, p.prosrc, p.prorettype, p.provolatile, p.proisstrict,
                    p.prosecdef, p.proretset, l.lanname
             FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
             WHERE p.pronamespace = 'pam_totp'::regnamespace AND p.proname = ANY (v_names)
    LOOP
        v_src := rtrim(btrim(f.prosrc, E' \t\r\n'), E'; \t\r\n');
        -- The encoding literal typed: with the helpers' own search_path gone, an untyped 'UTF8'
        -- would prefer a convert_to(text, text) of any schema on a caller's path over
        -- pg_catalog.convert_to(text, name) (the callers pin the path; a superuser calling a
        -- helper by hand may not).
        v_src := replace(v_src, $q$'UTF8')$q$, $q$'UTF8'::pg_catalog.name)$q$);
        -- comment lines before the query stay before it
        v_notes := coalesce(substring(v_src FROM '^((?:\s*--[^\n]*\n)*)'), '');
        v_src := btrim(substr(v_src, length(v_notes) + 1), E' \t\r\n');
        IF f.lanname <> 'sql' OR f.prosecdef OR f.proretset OR v_src ~ ';'
           OR (f.prorettype <> 'void'::regtype AND v_src !~* '^SELECT\s') THEN
            RAISE EXCEPTION 'pam-totp: migration 004: pam_totp.% is not 001''s', f.proname;
        END IF;
        IF f.prorettype = 'void'::regtype THEN
            v_src := E'BEGIN\n' || v_notes || v_src || E';\nEND';
        ELSE
            v_src := E'BEGIN\n' || v_notes || 'RETURN ' || regexp_replace(v_src, '^SELECT\s+', '', 'i')
                || E';\nEND';
        END IF;
        EXECUTE format('CREATE OR REPLACE FUNCTION pam_totp.%I(%s) RETURNS %s LANGUAGE plpgsql %s %s AS %L',
            f.proname, pg_get_function_arguments(f.oid), format_type(f.prorettype, NULL),
            CASE f.provolatile WHEN 'i' THEN 'IMMUTABLE' WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END,
            CASE WHEN f.proisstrict THEN 'STRICT' ELSE 'CALLED ON NULL INPUT' END, v_src);
        v_n := v_n + 1;
    END LOOP;
    IF v_n <> cardinality(v_names) THEN
        RAISE EXCEPTION 'pam-totp: migration 004: % of % helpers found', v_n, cardinality(v_names);
    END IF;
    -- key and stored_rhost were PL/pgSQL already: only their SET goes.
    ALTER FUNCTION pam_totp.key() RESET search_path;
    ALTER FUNCTION pam_totp.stored_rhost(text) RESET search_path;
END $$;

-- check: expired outcomes removed without waiting (an edit of the stored source that must
-- match exactly once, as in 002 and 003, so that the judging code stays written once, in 001).
DO $$
DECLARE
    v_body text;
    v_from text := $e$DELETE FROM pam_totp.results WHERE created < v_now - 600;$e$;
    v_to text := $e$DELETE FROM pam_totp.results WHERE ticket IN (
        SELECT ticket FROM pam_totp.results WHERE created < v_now - 600
        ORDER BY created LIMIT 32 FOR UPDATE SKIP LOCKED);$e$;
BEGIN
    SELECT prosrc INTO v_body FROM pg_proc
    WHERE oid = 'pam_totp.check(text, text, text, integer, bigint)'::regprocedure;
    IF (length(v_body) - length(replace(v_body, v_from, ''))) / length(v_from) <> 1 THEN
        RAISE EXCEPTION 'pam-totp: migration 004: pam_totp.check is not 003''s';
    END IF;
    EXECUTE format('CREATE OR REPLACE FUNCTION pam_totp.check(p_user text, p_answer text, '
        'p_rhost text, p_window integer, p_shown_at bigint) RETURNS uuid LANGUAGE plpgsql '
        'VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp AS %L',
        replace(v_body, v_from, v_to));
END $$;

ALTER TABLE pam_totp.users SET (fillfactor = 50);

INSERT INTO pam_totp.schema_version (version, name) VALUES (4, '004_steady');
RESET ROLE;
