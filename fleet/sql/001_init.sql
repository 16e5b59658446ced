-- pam-totp fleet store, migration 001: schema, roles, functions (SPEC §11; fleet/README.md).
--
-- How to apply (what `pam-totp store init` does, and tests/fleet/sql-test.sh):
--   * as a superuser, connected to the database dedicated to pam-totp (one per cluster);
--   * each fleet/sql/NNN_*.sql whose NNN is above max(pam_totp.schema_version.version)
--     (0 when the schema does not exist), in order, each in ONE transaction
--     (`psql -X -v ON_ERROR_STOP=1 --single-transaction -f FILE`);
--   * then, once, `SELECT pam_totp.set_key_file('/etc/postgresql/pam-totp.key');`
--     (a file outside the data directory, owned by the server's OS user, mode 0600, holding
--     at least 32 characters of random text, e.g. `openssl rand -hex 32`).
-- Every migration ends by inserting its row into pam_totp.schema_version.

DO $$
BEGIN
    IF to_regclass('pam_totp.schema_version') IS NOT NULL THEN
        RAISE EXCEPTION 'pam-totp: migration 001 is already applied';
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RAISE EXCEPTION 'pam-totp: migrations must be applied by a superuser';
    END IF;
END $$;

-- ---------------------------------------------------------------------------------------
-- Roles (cluster-wide). All three are NOLOGIN group roles:
--   pam_totp_owner  owns every object; member of pg_read_server_files to read the key file;
--                   CREATEROLE for add_host/revoke_host. Nobody is ever made a member.
--   pam_totp_admin  admins' login roles are members; may EXECUTE the admin functions only.
--   pam_totp_host   each host is a LOGIN role (named after the host) that is a member; may
--                   EXECUTE pam_totp.check and pam_totp.enrolment only.
-- ---------------------------------------------------------------------------------------
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pam_totp_owner', 'pam_totp_admin', 'pam_totp_host'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
        EXECUTE format('ALTER ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS', r);
    END LOOP;
END $$;
ALTER ROLE pam_totp_owner CREATEROLE;
ALTER ROLE pam_totp_admin NOCREATEROLE;
ALTER ROLE pam_totp_host NOCREATEROLE;
GRANT pg_read_server_files TO pam_totp_owner;
-- to grant and revoke pam_totp_host in add_host/revoke_host (PostgreSQL 16+ asks for ADMIN)
GRANT pam_totp_host TO pam_totp_owner WITH ADMIN OPTION;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_file(text) TO pam_totp_owner;

CREATE SCHEMA pam_totp AUTHORIZATION pam_totp_owner;
REVOKE ALL ON SCHEMA pam_totp FROM PUBLIC;
GRANT USAGE ON SCHEMA pam_totp TO pam_totp_admin, pam_totp_host;

-- pgcrypto (hmac, digest, pgp_sym_*, gen_random_bytes) in our own schema: pam-totp wants a
-- database of its own, where nobody installed pgcrypto elsewhere.
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA pam_totp;
DO $$
BEGIN
    IF (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pgcrypto') <> 'pam_totp' THEN
        RAISE EXCEPTION 'pam-totp: pgcrypto is installed in another schema of this database; '
            'use a database dedicated to pam-totp';
    END IF;
END $$;

SET ROLE pam_totp_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE pam_totp_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- ---------------------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------------------
-- What pam_totp.outcome returns for a check.
CREATE TYPE pam_totp.check_result AS (
    outcome text,        -- see COMMENT ON FUNCTION pam_totp.check
    reason text,         -- the module's log wording for the outcome
    step bigint,         -- accepted or replayed step
    clock_offset integer,-- accepted: matched step - current step
    last_step bigint,    -- replay: the last accepted step
    failures integer,    -- consecutive failures after this call
    locked_until bigint, -- unix seconds, 0: not locked
    recovery_left integer, -- unburned recovery codes after this call (enrolled users)
    db_time bigint       -- the database clock used ("now"), unix seconds
);

CREATE TABLE pam_totp.schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Where the encryption key lives: a path, never the key (owner only; one row).
CREATE TABLE pam_totp.config (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    key_file text NOT NULL CHECK (key_file LIKE '/%'),
    key_id text NOT NULL
);

-- Throttle and window settings, fleet-wide (policy.toml's [throttle] in fleet mode). One row.
CREATE TABLE pam_totp.settings (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    attempts integer NOT NULL DEFAULT 5 CHECK (attempts >= 1),
    lock_seconds integer NOT NULL DEFAULT 60,
    max_lock_seconds integer NOT NULL DEFAULT 3600,
    -- the widest window a host may ask for (module option window=, 0..10)
    max_window integer NOT NULL DEFAULT 10 CHECK (max_window BETWEEN 0 AND 10),
    -- a burned recovery code typed again within this time is a double submit (not counted)
    recovery_replay_seconds integer NOT NULL DEFAULT 300
        CHECK (recovery_replay_seconds BETWEEN 0 AND 86400),
    CHECK (1 <= lock_seconds AND lock_seconds <= max_lock_seconds AND max_lock_seconds <= 86400)
);
INSERT INTO pam_totp.settings DEFAULT VALUES;

-- One row per user: record (§2.1) and state (§2.2) together, so one row lock serialises.
CREATE TABLE pam_totp.users (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$'),
    status text NOT NULL CHECK (status IN ('active', 'pending')),
    replaces_active boolean NOT NULL DEFAULT false,
    secret bytea NOT NULL,            -- pgp_sym_encrypt_bytea(key bytes, the key file's key)
    key_id text NOT NULL,             -- which key encrypted it (config.key_id)
    algorithm text NOT NULL CHECK (algorithm IN ('SHA1', 'SHA256', 'SHA512')),
    digits integer NOT NULL CHECK (digits IN (6, 8)),
    period integer NOT NULL CHECK (period BETWEEN 15 AND 300),
    issuer text NOT NULL,
    created timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_step bigint CHECK (last_step >= 0),
    last_offset integer,
    failures integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until bigint NOT NULL DEFAULT 0,   -- unix seconds, 0: not locked
    last_success_time timestamptz,
    last_success_host text,
    last_success_rhost text,
    -- recovery codes: pgp_sym_encrypt_bytea of a JSON array [{"h": "sha256:<salt>:<hash>",
    -- "b": null | burned-at unix seconds}, ...]; a burned code stays listed for
    -- settings.recovery_replay_seconds (to tell a double submit from a guess), then goes. In
    -- the row, so that every judged answer writes the same one row (see check).
    recovery bytea NOT NULL,
    CHECK (NOT replaces_active OR status = 'pending')
);

-- Host roles made by add_host (so that revoke_host and a later add_host know them).
CREATE TABLE pam_totp.hosts (
    name text PRIMARY KEY,
    added timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked timestamptz
);

-- The outcome of each check, kept a few minutes for pam_totp.outcome (see check).
CREATE TABLE pam_totp.results (
    ticket uuid PRIMARY KEY,
    xid xid8 NOT NULL,        -- the transaction that judged the answer
    host text NOT NULL,       -- session_user of the check
    created bigint NOT NULL,
    result pam_totp.check_result NOT NULL
);
CREATE INDEX results_created ON pam_totp.results (created);

-- Every check and every admin action. host: the session_user that called (a host's login role,
-- or an admin's); never the answer.
CREATE TABLE pam_totp.audit (
    id bigserial PRIMARY KEY,
    time timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_name text,
    host text NOT NULL DEFAULT session_user,
    rhost text,
    outcome text NOT NULL,
    reason text NOT NULL
);
CREATE INDEX audit_user_time ON pam_totp.audit (user_name, time);

-- ---------------------------------------------------------------------------------------
-- Internal functions (owner only: EXECUTE is revoked from PUBLIC and granted to nobody)
-- ---------------------------------------------------------------------------------------

-- The encryption key: read from the key file on every use; never stored, never returned to a
-- caller outside this schema's SECURITY DEFINER functions.
CREATE FUNCTION pam_totp.key() RETURNS text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    v_path text;
    v_key text;
BEGIN
    SELECT key_file INTO v_path FROM pam_totp.config;
    IF v_path IS NULL THEN
        RAISE EXCEPTION 'pam-totp: no key file configured (run pam_totp.set_key_file)';
    END IF;
    v_key := btrim(pg_catalog.pg_read_file(v_path), E' \t\r\n');
    IF length(v_key) < 32 THEN
        RAISE EXCEPTION 'pam-totp: the key file % holds fewer than 32 characters', v_path;
    END IF;
    RETURN v_key;
END $$;

CREATE FUNCTION pam_totp.key_id_of(p_key text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$ SELECT encode(substr(pam_totp.hmac('pam-totp key id'::bytea, convert_to(p_key, 'UTF8'), 'sha256'), 1, 8), 'hex') $$;

CREATE FUNCTION pam_totp.encrypt_secret(p_secret bytea, p_key text) RETURNS bytea
LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$ SELECT pam_totp.pgp_sym_encrypt_bytea(p_secret, p_key,
        'cipher-algo=aes256, s2k-mode=1, s2k-digest-algo=sha256') $$;

CREATE FUNCTION pam_totp.decrypt_secret(p_cipher bytea, p_key text) RETURNS bytea
LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$ SELECT pam_totp.pgp_sym_decrypt_bytea(p_cipher, p_key) $$;

-- RFC 4226/6238: the code of time step p_step (HMAC over the 8-byte big-endian counter,
-- dynamic truncation, modulo 10^digits, zero-padded). Same results as totp::Generator.
CREATE FUNCTION pam_totp.code_at(p_secret bytea, p_algorithm text, p_digits integer, p_step bigint)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
    -- (PostgreSQL gives << | & one precedence, left to right: every term is parenthesised.)
    SELECT lpad(((((get_byte(mac, o) & 127) << 24) | (get_byte(mac, o + 1) << 16)
                  | (get_byte(mac, o + 2) << 8) | get_byte(mac, o + 3))
                 % (10 ^ p_digits)::integer)::text, p_digits, '0')
    FROM (SELECT mac, get_byte(mac, length(mac) - 1) & 15 AS o
          FROM (SELECT pam_totp.hmac(int8send(p_step), p_secret, lower(p_algorithm)) AS mac) h) t
$$;

-- The highest step in [now_step - window, now_step + window] whose code equals p_code
-- (every step of the window is computed), or NULL. totp::Generator::matching_step.
CREATE FUNCTION pam_totp.matching_step(p_secret bytea, p_algorithm text, p_digits integer,
    p_period integer, p_code text, p_now bigint, p_window integer)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
    SELECT max(s) FILTER (WHERE c = p_code)
    FROM (SELECT s, pam_totp.code_at(p_secret, p_algorithm, p_digits, s) AS c
          FROM generate_series(greatest(p_now / p_period - p_window, 0),
                               p_now / p_period + p_window) AS s) w
$$;

-- The database clock in unix seconds: "now" for codes, throttle and offsets.
CREATE FUNCTION pam_totp.now_s() RETURNS bigint
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pam_totp, pg_temp
AS $$ SELECT floor(extract(epoch FROM clock_timestamp()))::bigint $$;

-- timefmt::rfc3339: 2026-11-23T19:00:00Z
CREATE FUNCTION pam_totp.rfc3339(p_unix bigint) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$ SELECT to_char(to_timestamp(p_unix) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') $$;

-- throttle::Throttle::locked_until_after: after `failures` consecutive failures at p_now.
CREATE FUNCTION pam_totp.locked_until_after(p_failures integer, p_now bigint,
    p_attempts integer, p_lock_seconds integer, p_max_lock_seconds integer)
RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
    SELECT CASE
        WHEN p_failures < p_attempts THEN 0
        WHEN p_failures - p_attempts >= 32 THEN p_now + p_max_lock_seconds
        ELSE p_now + least(p_lock_seconds::bigint * (2::bigint ^ (p_failures - p_attempts))::bigint,
                           p_max_lock_seconds)
    END
$$;

-- recovery::find for one entry: p_normalized (lower-cased, no dashes/spaces) against
-- `sha256:<salt-hex>:<hash-hex>`, hash = SHA-256(salt ‖ normalised code).
CREATE FUNCTION pam_totp.recovery_match(p_normalized text, p_entry text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
    SELECT pam_totp.digest(decode(split_part(p_entry, ':', 2), 'hex')
                           || convert_to(p_normalized, 'UTF8'), 'sha256')
           = decode(split_part(p_entry, ':', 3), 'hex')
$$;

-- recovery::normalize, then the length rule of recovery::find (NULL: not a candidate).
CREATE FUNCTION pam_totp.recovery_normalize(p_compact text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
    SELECT CASE WHEN n = '' OR octet_length(n) > 64 THEN NULL ELSE n END
    FROM (SELECT lower(translate(p_compact, E'- \t', '')) AS n) t
$$;

-- At most 255 bytes, cut on a character boundary (flow::stored_rhost).
CREATE FUNCTION pam_totp.stored_rhost(p_rhost text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    v text := left(p_rhost, 255);
BEGIN
    WHILE octet_length(v) > 255 LOOP
        v := left(v, -1);
    END LOOP;
    RETURN v;
END $$;

-- The encrypted recovery list of these §4 entries (validated, lower-cased, de-duplicated).
CREATE FUNCTION pam_totp.recovery_blob(p_entries text[], p_key text) RETURNS bytea
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM unnest(coalesce(p_entries, '{}')) AS e
    WHERE e IS NULL OR e !~ '^sha256:([0-9a-fA-F]{2}){8,}:[0-9a-fA-F]{64}$';
    IF FOUND THEN
        RAISE EXCEPTION 'a recovery code entry is not sha256:<salt-hex>:<hash-hex> (salt >= 8 bytes)';
    END IF;
    RETURN pam_totp.encrypt_secret(convert_to(coalesce(
        (SELECT jsonb_agg(jsonb_build_object('h', e, 'b', NULL) ORDER BY e)
         FROM (SELECT DISTINCT lower(e) AS e FROM unnest(p_entries) AS e) d),
        '[]'::jsonb)::text, 'UTF8'), p_key);
END $$;

CREATE FUNCTION pam_totp.recovery_list(p_blob bytea, p_key text) RETURNS jsonb
LANGUAGE sql VOLATILE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$ SELECT convert_from(pam_totp.decrypt_secret(p_blob, p_key), 'UTF8')::jsonb $$;

CREATE FUNCTION pam_totp.recovery_left(p_list jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pam_totp, pg_temp
AS $$ SELECT count(*)::integer FROM jsonb_array_elements(p_list) e WHERE jsonb_typeof(e -> 'b') = 'null' $$;

CREATE FUNCTION pam_totp.audit_log(p_user text, p_rhost text, p_outcome text, p_reason text)
RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
    INSERT INTO pam_totp.audit (user_name, host, rhost, outcome, reason)
    VALUES (p_user, session_user, pam_totp.stored_rhost(p_rhost), p_outcome, p_reason)
$$;

-- Set up (or move) the key file. Superuser only (store init); the key must read back.
CREATE FUNCTION pam_totp.set_key_file(p_path text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    v_key text;
BEGIN
    IF EXISTS (SELECT 1 FROM pam_totp.users) THEN
        RAISE EXCEPTION 'pam-totp: users exist; change the key with pam_totp.rotate_key';
    END IF;
    INSERT INTO pam_totp.config (key_file, key_id) VALUES (p_path, '')
    ON CONFLICT (id) DO UPDATE SET key_file = EXCLUDED.key_file;
    v_key := pam_totp.key();
    UPDATE pam_totp.config SET key_id = pam_totp.key_id_of(v_key);
    RETURN pam_totp.key_id_of(v_key);
END $$;
COMMENT ON FUNCTION pam_totp.set_key_file(text) IS
'Superuser only (store init). Records the path of the key file (outside the data directory, '
'owned by the server''s OS user, 0600, >= 32 characters of random text) and returns the key''s '
'id (8 bytes of HMAC-SHA256, hex). Refused once users exist: use rotate_key.';

-- Re-encrypt every secret with the key in p_new_path and make it the key file. Superuser only;
-- both files must be readable while it runs; afterwards the old file can be destroyed.
CREATE FUNCTION pam_totp.rotate_key(p_new_path text) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    v_old text := pam_totp.key();
    v_new text;
    v_id text;
    n integer;
BEGIN
    PERFORM 1 FROM pam_totp.users FOR UPDATE;
    UPDATE pam_totp.config SET key_file = p_new_path;
    v_new := pam_totp.key();
    v_id := pam_totp.key_id_of(v_new);
    UPDATE pam_totp.users
    SET secret = pam_totp.encrypt_secret(pam_totp.decrypt_secret(secret, v_old), v_new),
        recovery = pam_totp.encrypt_secret(pam_totp.decrypt_secret(recovery, v_old), v_new),
        key_id = v_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE pam_totp.config SET key_id = v_id;
    PERFORM pam_totp.audit_log(NULL, NULL, 'admin', format('rotate_key (%s secrets)', n));
    RETURN n;
END $$;
COMMENT ON FUNCTION pam_totp.rotate_key(text) IS
'Superuser only. Re-encrypts every secret and recovery list with the key in the file p_new_path (both old and new '
'files readable during the call, one transaction), makes it the key file; returns the number '
'of secrets re-encrypted. Old dumps and base backups stay encrypted with the old key.';

-- ---------------------------------------------------------------------------------------
-- Host functions (EXECUTE: pam_totp_host)
-- ---------------------------------------------------------------------------------------
CREATE TYPE pam_totp.enrolment_result AS (
    enrolment text,     -- 'active' | 'pending_replacement' | 'none'
    digits integer,     -- of the active or pending record; NULL for 'none'
    db_time bigint      -- the database clock, unix seconds
);

CREATE FUNCTION pam_totp.enrolment(p_user text) RETURNS pam_totp.enrolment_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    u pam_totp.users%ROWTYPE;
    r pam_totp.enrolment_result;
BEGIN
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
COMMENT ON FUNCTION pam_totp.enrolment(text) IS
'Host. enrolment(user) -> (enrolment, digits, db_time): ''active'' (ask for a code, then call '
'check), ''pending_replacement'' (enroll --force not yet activated: ask, then deny as '
'"re-enrolment pending activation"), ''none'' (no record, or a pending one without '
'replaces_active: the per-host policy decides, SPEC §3 steps 3-5). No secret, no hash, no '
'state is returned; nothing is written.';

CREATE FUNCTION pam_totp.check(p_user text, p_answer text, p_rhost text, p_window integer)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    u pam_totp.users%ROWTYPE;
    s pam_totp.settings%ROWTYPE;
    r pam_totp.check_result;
    v_found boolean;
    v_now bigint;
    v_compact text;
    v_norm text;
    v_window integer;
    v_step bigint;
    v_key text;
    v_list jsonb;
    v_idx bigint;
    v_burned boolean;
    v_fail integer;
    v_locked bigint;
    v_success boolean;
    v_ticket uuid := gen_random_uuid();
BEGIN
    -- Serialise every check of this user: the row lock is held until commit.
    SELECT * INTO u FROM pam_totp.users WHERE name = p_user FOR UPDATE;
    v_found := FOUND;
    v_now := pam_totp.now_s();
    r.db_time := v_now;
    DELETE FROM pam_totp.results WHERE created < v_now - 600;
    -- flow::compact: NULL (the client's "not UTF-8") or over 128 bytes: a wrong code.
    IF p_answer IS NOT NULL AND octet_length(p_answer) <= 128 THEN
        v_compact := regexp_replace(p_answer, '\s', '', 'g');
    END IF;

    IF NOT v_found OR u.status <> 'active' THEN
        IF v_found AND u.replaces_active THEN
            r.outcome := 'pending_replacement';
            r.reason := 're-enrolment pending activation';
        ELSE
            r.outcome := 'not_enrolled';
            r.reason := 'record changed during login';
        END IF;
    ELSIF v_compact = '' THEN
        r.outcome := 'empty';
        r.reason := 'empty code (not counted)';
    ELSIF u.locked_until > v_now THEN
        r.outcome := 'locked';
        r.reason := 'locked until ' || pam_totp.rfc3339(u.locked_until);
    END IF;
    IF r.outcome IS NOT NULL THEN
        r.failures := u.failures;
        r.locked_until := u.locked_until;
        r.last_step := u.last_step;
    ELSE
        -- Judge. The same work and the same writes whatever the answer turns out to be: the
        -- window is computed for any code-shaped answer, every recovery entry is compared for
        -- any answer, and the user's row is rewritten once (see fleet/README.md).
        SELECT * INTO s FROM pam_totp.settings;
        v_key := pam_totp.key();
        v_fail := CASE WHEN u.failures >= 2147483647 THEN u.failures ELSE u.failures + 1 END;
        v_locked := pam_totp.locked_until_after(v_fail, v_now, s.attempts, s.lock_seconds,
                                                s.max_lock_seconds);
        v_window := least(greatest(coalesce(p_window, 1), 0), 10, s.max_window);
        IF v_compact IS NOT NULL AND length(v_compact) = u.digits AND v_compact ~ '^[0-9]+$' THEN
            v_step := pam_totp.matching_step(pam_totp.decrypt_secret(u.secret, v_key),
                u.algorithm, u.digits, u.period, v_compact, v_now, v_window);
        END IF;
        -- recovery codes: burned entries past the replay time go; then every entry is compared
        SELECT coalesce(jsonb_agg(e ORDER BY i), '[]'::jsonb) INTO v_list
        FROM jsonb_array_elements(pam_totp.recovery_list(u.recovery, v_key)) WITH ORDINALITY AS a (e, i)
        WHERE jsonb_typeof(e -> 'b') = 'null'
           OR (e ->> 'b')::bigint >= v_now - s.recovery_replay_seconds;
        v_norm := pam_totp.recovery_normalize(coalesce(v_compact, ''));
        SELECT min(i) FILTER (WHERE live AND ok), coalesce(bool_or(ok AND NOT live), false)
        INTO v_idx, v_burned
        FROM (SELECT i, jsonb_typeof(e -> 'b') = 'null' AS live,
                     coalesce(pam_totp.recovery_match(v_norm, e ->> 'h'), false) AS ok
              FROM jsonb_array_elements(v_list) WITH ORDINALITY AS a (e, i)) t;

        IF v_step IS NOT NULL AND u.last_step IS NOT NULL AND v_step <= u.last_step THEN
            r.outcome := 'replay';
            r.step := v_step;
            r.reason := format('replayed code (step %s, last accepted %s)', v_step, u.last_step);
        ELSIF v_step IS NOT NULL THEN
            r.outcome := 'accepted';
            r.step := v_step;
            r.clock_offset := v_step - v_now / u.period;
            r.reason := format('accepted step %s (offset %s)', v_step, r.clock_offset);
        ELSIF v_idx IS NOT NULL THEN
            r.outcome := 'accepted_recovery';
            v_list := jsonb_set(v_list, ARRAY[(v_idx - 1)::text, 'b'], to_jsonb(v_now));
            r.reason := format('accepted recovery code (%s left)', pam_totp.recovery_left(v_list));
        ELSIF v_burned THEN
            r.outcome := 'recovery_replay';
            r.reason := 'replayed recovery code (burned by a concurrent login; not counted)';
        ELSE
            r.outcome := 'wrong';
        END IF;
        v_success := r.outcome IN ('accepted', 'accepted_recovery');
        r.last_step := u.last_step;
        r.failures := CASE WHEN v_success THEN 0 WHEN r.outcome = 'wrong' THEN v_fail ELSE u.failures END;
        r.locked_until := CASE WHEN v_success THEN 0 WHEN r.outcome = 'wrong' THEN v_locked ELSE u.locked_until END;
        IF r.outcome = 'wrong' THEN
            r.reason := format('wrong code (failure %s)', v_fail)
                || CASE WHEN v_locked > 0 THEN '; locked until ' || pam_totp.rfc3339(v_locked) ELSE '' END;
        END IF;
        UPDATE pam_totp.users SET
            last_step = CASE WHEN r.outcome = 'accepted' THEN v_step ELSE last_step END,
            last_offset = CASE WHEN r.outcome = 'accepted' THEN r.clock_offset ELSE last_offset END,
            failures = r.failures,
            locked_until = r.locked_until,
            last_success_time = CASE WHEN v_success THEN to_timestamp(v_now) ELSE last_success_time END,
            last_success_host = CASE WHEN v_success THEN session_user ELSE last_success_host END,
            last_success_rhost = CASE WHEN v_success THEN pam_totp.stored_rhost(p_rhost) ELSE last_success_rhost END,
            recovery = pam_totp.encrypt_secret(convert_to(v_list::text, 'UTF8'), v_key)
        WHERE name = p_user;
        r.recovery_left := pam_totp.recovery_left(v_list);
    END IF;
    INSERT INTO pam_totp.results (ticket, xid, host, created, result)
    VALUES (v_ticket, pg_current_xact_id(), session_user, v_now, r);
    PERFORM pam_totp.audit_log(p_user, p_rhost, r.outcome, r.reason);
    RETURN v_ticket;
END $$;
COMMENT ON FUNCTION pam_totp.check(text, text, text, integer) IS
'Host. check(user, answer, rhost, window) -> ticket (uuid); then outcome(ticket) in a later '
'transaction. Call it in autocommit (its own transaction), once per login, after the user '
'answered. Locks the user''s row (concurrent checks of one user serialise), takes now from the '
'database clock, judges the answer as the module does (SPEC §3, flow::verify_enrolled) and '
'writes the outcome, the user''s new state and one audit row (host = session_user) in that '
'transaction. The outcome is only readable once that transaction has committed, so a host '
'cannot learn it and roll the count back. answer NULL means "not UTF-8" (a wrong code); window '
'is capped to 0..min(10, settings.max_window), NULL = 1. Never returns or logs the answer.';

CREATE FUNCTION pam_totp.outcome(p_ticket uuid) RETURNS pam_totp.check_result
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    v pam_totp.results%ROWTYPE;
BEGIN
    SELECT * INTO v FROM pam_totp.results WHERE ticket = p_ticket AND host = session_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pam-totp: no check with this ticket (expired, or another host''s)';
    END IF;
    IF pg_xact_status(v.xid) IS DISTINCT FROM 'committed' THEN
        RAISE EXCEPTION 'pam-totp: the check is not committed yet'
            USING HINT = 'call pam_totp.check in its own transaction (autocommit), then outcome';
    END IF;
    RETURN v.result;
END $$;
COMMENT ON FUNCTION pam_totp.outcome(uuid) IS
'Host. outcome(ticket) -> check_result (outcome, reason, step, clock_offset, last_step, '
'failures, locked_until, recovery_left, db_time) of a check this host made in the last 10 '
'minutes whose transaction has committed (else an error: treat as store unavailable). '
'Outcomes (reason = the module''s log line): accepted (step, clock_offset = step - current '
'step; failures reset; last_step = step; last success time/host/rhost stored) | '
'accepted_recovery (code burned; recovery_left) | replay (step <= last_step; not counted) | '
'recovery_replay (a code burned within settings.recovery_replay_seconds; not counted) | wrong '
'(counted: failures, locked_until) | locked (not checked, not counted; locked_until) | empty '
'(nothing typed; not counted) | not_enrolled (no active record: "record changed during '
'login") | pending_replacement (enroll --force not yet activated).';

-- ---------------------------------------------------------------------------------------
-- Admin functions (EXECUTE: pam_totp_admin). Each writes an audit row (outcome 'admin').
-- ---------------------------------------------------------------------------------------
CREATE TYPE pam_totp.enrol_result AS (
    secret bytea,            -- the key (generated when none was given): shown once, never again
    replaces_active boolean  -- the pending record replaces an active one (enroll --force)
);

CREATE FUNCTION pam_totp.enrol(p_user text, p_secret bytea, p_algorithm text, p_digits integer,
    p_period integer, p_issuer text, p_recovery text[], p_force boolean)
RETURNS pam_totp.enrol_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    u pam_totp.users%ROWTYPE;
    r pam_totp.enrol_result;
    v_key text := pam_totp.key();
    v_secret bytea := p_secret;
    v_alg text := coalesce(p_algorithm, 'SHA1');
BEGIN
    IF v_alg NOT IN ('SHA1', 'SHA256', 'SHA512') THEN
        RAISE EXCEPTION 'algorithm must be SHA1, SHA256 or SHA512, not %', v_alg;
    END IF;
    IF v_secret IS NULL THEN
        v_secret := pam_totp.gen_random_bytes(CASE v_alg WHEN 'SHA1' THEN 20 WHEN 'SHA256' THEN 32 ELSE 64 END);
    ELSIF length(v_secret) NOT BETWEEN 10 AND 128 THEN
        RAISE EXCEPTION 'the key must be 80 to 1024 bits, not %', length(v_secret) * 8;
    END IF;
    SELECT * INTO u FROM pam_totp.users WHERE name = p_user FOR UPDATE;
    IF NOT FOUND THEN
        r.replaces_active := false;
    ELSIF u.status = 'pending' THEN
        r.replaces_active := u.replaces_active;
    ELSIF coalesce(p_force, false) THEN
        r.replaces_active := true;
    ELSE
        RAISE EXCEPTION '% already has an active record; nothing was changed', p_user
            USING HINT = 'to replace it, enrol with force (the old key stops working at once)';
    END IF;
    -- A new key: no step of it was used yet; the throttle state is kept.
    INSERT INTO pam_totp.users AS t (name, status, replaces_active, secret, key_id, algorithm,
                                digits, period, issuer, created, recovery)
    VALUES (p_user, 'pending', r.replaces_active, pam_totp.encrypt_secret(v_secret, v_key),
            pam_totp.key_id_of(v_key), v_alg, coalesce(p_digits, 6), coalesce(p_period, 30),
            coalesce(p_issuer, ''), clock_timestamp(), pam_totp.recovery_blob(p_recovery, v_key))
    ON CONFLICT (name) DO UPDATE SET status = 'pending', replaces_active = EXCLUDED.replaces_active,
        secret = EXCLUDED.secret, key_id = EXCLUDED.key_id, algorithm = EXCLUDED.algorithm,
        digits = EXCLUDED.digits, period = EXCLUDED.period, issuer = EXCLUDED.issuer,
        created = EXCLUDED.created, last_step = NULL, last_offset = NULL,
        recovery = EXCLUDED.recovery;
    PERFORM pam_totp.audit_log(p_user, NULL, 'admin',
        format('enrol (%s, %s digits, %s s%s)', v_alg, coalesce(p_digits, 6),
               coalesce(p_period, 30), CASE WHEN r.replaces_active THEN ', replaces active' ELSE '' END));
    r.secret := CASE WHEN p_secret IS NULL THEN v_secret END;
    RETURN r;
END $$;
COMMENT ON FUNCTION pam_totp.enrol(text, bytea, text, integer, integer, text, text[], boolean) IS
'Admin (enroll, import). enrol(user, secret, algorithm, digits, period, issuer, recovery_hashes, '
'force) -> (secret, replaces_active). Writes a pending record: secret NULL = generate one '
'(20/32/64 bytes) and return it once (else secret is returned NULL); algorithm SHA1|SHA256|'
'SHA512 (NULL: SHA1), digits 6|8 (NULL: 6), period 15..300 (NULL: 30); recovery_hashes are '
'§4 entries sha256:<salt-hex>:<hash-hex> (they replace all old ones). An active record is '
'refused unless force (then replaces_active: logins are denied until activate). A pending '
'record is replaced (keeping its replaces_active). last_step is cleared (a new key), the '
'throttle state kept.';

CREATE TYPE pam_totp.activate_result AS (
    outcome text,        -- activated | wrong | replay | already_active | not_enrolled
    step bigint,
    clock_offset integer
);

CREATE FUNCTION pam_totp.activate(p_user text, p_code text, p_window integer)
RETURNS pam_totp.activate_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    u pam_totp.users%ROWTYPE;
    r pam_totp.activate_result;
    v_now bigint;
    v_code text := regexp_replace(coalesce(p_code, ''), '\s', '', 'g');
BEGIN
    SELECT * INTO u FROM pam_totp.users WHERE name = p_user FOR UPDATE;
    IF NOT FOUND THEN
        r.outcome := 'not_enrolled';
    ELSIF u.status = 'active' THEN
        r.outcome := 'already_active';
    ELSE
        v_now := pam_totp.now_s();
        r.step := pam_totp.matching_step(pam_totp.decrypt_secret(u.secret, pam_totp.key()),
            u.algorithm, u.digits, u.period, v_code, v_now,
            least(greatest(coalesce(p_window, 1), 0), 10));
        IF r.step IS NULL THEN
            r.outcome := 'wrong';
        ELSIF u.last_step IS NOT NULL AND r.step <= u.last_step THEN
            r.outcome := 'replay';
        ELSE
            r.outcome := 'activated';
            r.clock_offset := r.step - v_now / u.period;
            UPDATE pam_totp.users SET status = 'active', replaces_active = false,
                last_step = r.step, last_offset = r.clock_offset, failures = 0, locked_until = 0
            WHERE name = p_user;
        END IF;
    END IF;
    PERFORM pam_totp.audit_log(p_user, NULL, 'admin',
        format('activate: %s', r.outcome) || coalesce(format(' step %s', r.step), ''));
    RETURN r;
END $$;
COMMENT ON FUNCTION pam_totp.activate(text, text, integer) IS
'Admin (activate). activate(user, code, window) -> (outcome, step, clock_offset): a pending '
'record becomes active when code matches a step within window (NULL: 1, the CLI''s confirm '
'window) that is above last_step; that step is consumed, the throttle reset. Outcomes: '
'activated | wrong | replay | already_active | not_enrolled. Wrong codes are not counted.';

CREATE FUNCTION pam_totp.disable(p_user text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    v_found boolean;
BEGIN
    DELETE FROM pam_totp.users WHERE name = p_user;
    v_found := FOUND;
    PERFORM pam_totp.audit_log(p_user, NULL, 'admin',
        CASE WHEN v_found THEN 'disable' ELSE 'disable (no record)' END);
    RETURN v_found;
END $$;
COMMENT ON FUNCTION pam_totp.disable(text) IS
'Admin (disable). disable(user) -> whether a record existed. Removes the record, its state '
'and its recovery codes (every host at once; a check waiting on the row lock then sees '
'not_enrolled). Idempotent.';

CREATE TYPE pam_totp.unlock_result AS (
    previous_last_step bigint,
    last_step bigint,
    was_future boolean   -- the old step lay beyond now + 10 steps (a clock that was ahead)
);

CREATE FUNCTION pam_totp.unlock(p_user text, p_reset_clock boolean)
RETURNS pam_totp.unlock_result
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    u pam_totp.users%ROWTYPE;
    r pam_totp.unlock_result;
    v_cur bigint;
BEGIN
    SELECT * INTO u FROM pam_totp.users WHERE name = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% has no record', p_user;
    END IF;
    v_cur := pam_totp.now_s() / u.period;
    r.previous_last_step := u.last_step;
    r.was_future := coalesce(u.last_step > v_cur + 10, false);
    r.last_step := CASE
        WHEN r.was_future AND coalesce(p_reset_clock, false) THEN v_cur
        ELSE greatest(u.last_step, v_cur) END;
    UPDATE pam_totp.users SET failures = 0, locked_until = 0, last_step = r.last_step
    WHERE name = p_user;
    PERFORM pam_totp.audit_log(p_user, NULL, 'admin',
        format('unlock%s: last step %s', CASE WHEN p_reset_clock THEN ' --reset-clock' ELSE '' END,
               r.last_step));
    RETURN r;
END $$;
COMMENT ON FUNCTION pam_totp.unlock(text, boolean) IS
'Admin (unlock). unlock(user, reset_clock) -> (previous_last_step, last_step, was_future): '
'failures and lock reset; last_step = max(last_step, current step) so no earlier code can be '
'replayed; with reset_clock a last_step beyond current + 10 steps is set to the current step '
'(the --reset-clock repair). Error when the user has no record.';

CREATE FUNCTION pam_totp.renew_recovery(p_user text, p_hashes text[]) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE pam_totp.users SET recovery = pam_totp.recovery_blob(p_hashes, pam_totp.key())
    WHERE name = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION '% has no record', p_user;
    END IF;
    n := (SELECT count(DISTINCT lower(h)) FROM unnest(p_hashes) AS h);
    PERFORM pam_totp.audit_log(p_user, NULL, 'admin', format('renew recovery codes (%s)', n));
    RETURN n;
END $$;
COMMENT ON FUNCTION pam_totp.renew_recovery(text, text[]) IS
'Admin (recovery). renew_recovery(user, hashes) -> count: replaces all of the user''s recovery '
'codes (burned ones included) with these §4 entries (sha256:<salt-hex>:<hash-hex>; computed '
'by the CLI, the codes themselves never reach the database). Error when no record.';

CREATE TYPE pam_totp.user_status AS (
    name text,
    status text,              -- active | pending
    replaces_active boolean,
    algorithm text,
    digits integer,
    period integer,
    issuer text,
    created timestamptz,
    last_step bigint,
    last_offset integer,
    failures integer,
    locked_until bigint,      -- unix seconds, 0: not locked
    locked boolean,           -- locked_until > db_time
    last_success_time timestamptz,
    last_success_host text,
    last_success_rhost text,
    recovery_left integer,
    db_time bigint
);

CREATE FUNCTION pam_totp.status(p_user text) RETURNS SETOF pam_totp.user_status
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
    SELECT u.name, u.status, u.replaces_active, u.algorithm, u.digits, u.period, u.issuer,
           u.created, u.last_step, u.last_offset, u.failures, u.locked_until,
           u.locked_until > n.now, u.last_success_time, u.last_success_host,
           u.last_success_rhost,
           pam_totp.recovery_left(pam_totp.recovery_list(u.recovery, k.key)),
           n.now
    FROM pam_totp.users u, (SELECT pam_totp.now_s() AS now) n, (SELECT pam_totp.key() AS key) k
    WHERE p_user IS NULL OR u.name = p_user
    ORDER BY u.name
$$;
COMMENT ON FUNCTION pam_totp.status(text) IS
'Admin (status, list). status(user) -> user_status rows (none: no record); status(NULL) -> '
'every user. Settings, state, last success (time, host, rhost), recovery codes left, the '
'database clock. Never a secret or a hash.';

CREATE FUNCTION pam_totp.settings() RETURNS pam_totp.settings
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$ SELECT * FROM pam_totp.settings $$;
COMMENT ON FUNCTION pam_totp.settings() IS
'Admin (policy show). settings() -> the one settings row (attempts, lock_seconds, '
'max_lock_seconds, max_window, recovery_replay_seconds).';

CREATE FUNCTION pam_totp.set_settings(p_attempts integer, p_lock_seconds integer,
    p_max_lock_seconds integer, p_max_window integer, p_recovery_replay_seconds integer)
RETURNS pam_totp.settings
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    r pam_totp.settings%ROWTYPE;
BEGIN
    UPDATE pam_totp.settings SET
        attempts = coalesce(p_attempts, attempts),
        lock_seconds = coalesce(p_lock_seconds, lock_seconds),
        max_lock_seconds = coalesce(p_max_lock_seconds, max_lock_seconds),
        max_window = coalesce(p_max_window, max_window),
        recovery_replay_seconds = coalesce(p_recovery_replay_seconds, recovery_replay_seconds)
    RETURNING * INTO r;
    PERFORM pam_totp.audit_log(NULL, NULL, 'admin',
        format('settings: attempts %s, lock_seconds %s, max_lock_seconds %s, max_window %s, '
               'recovery_replay_seconds %s', r.attempts, r.lock_seconds, r.max_lock_seconds,
               r.max_window, r.recovery_replay_seconds));
    RETURN r;
END $$;
COMMENT ON FUNCTION pam_totp.set_settings(integer, integer, integer, integer, integer) IS
'Admin (policy set, [throttle]). set_settings(attempts, lock_seconds, max_lock_seconds, '
'max_window, recovery_replay_seconds) -> the new row; NULL keeps a value. Checked as '
'policy::validate_throttle (attempts >= 1, 1 <= lock <= max_lock <= 86400), max_window 0..10 '
'(a check_violation error otherwise).';

CREATE FUNCTION pam_totp.add_host(p_host text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
DECLARE
    v_known boolean;
BEGIN
    IF p_host IS NULL OR p_host !~ '^[a-z0-9][a-z0-9.-]{0,62}$' THEN
        RAISE EXCEPTION 'invalid host role name %', p_host
            USING HINT = 'lower-case letters, digits, dots and dashes, at most 63';
    END IF;
    v_known := EXISTS (SELECT 1 FROM pam_totp.hosts WHERE name = p_host);
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_host) THEN
        IF NOT v_known OR (SELECT rolsuper FROM pg_roles WHERE rolname = p_host) THEN
            RAISE EXCEPTION 'role % exists and is not a pam-totp host', p_host;
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN', p_host);
        EXECUTE format('GRANT pam_totp_host TO %I', p_host);
        UPDATE pam_totp.hosts SET revoked = NULL WHERE name = p_host;
        PERFORM pam_totp.audit_log(NULL, NULL, 'admin', format('add host %s (again)', p_host));
        RETURN false;
    END IF;
    EXECUTE format('CREATE ROLE %I LOGIN IN ROLE pam_totp_host', p_host);
    INSERT INTO pam_totp.hosts (name) VALUES (p_host)
    ON CONFLICT (name) DO UPDATE SET added = clock_timestamp(), revoked = NULL;
    PERFORM pam_totp.audit_log(NULL, NULL, 'admin', format('add host %s', p_host));
    RETURN true;
END $$;
COMMENT ON FUNCTION pam_totp.add_host(text) IS
'Admin. add_host(name) -> true if a role was created: a LOGIN role named after the host '
'(lower-case letters, digits, dots, dashes; <= 63), member of pam_totp_host, no password (hosts '
'log in with a client certificate whose CN is the role name: pg_hba "hostssl ... cert"). A host '
'added before (even revoked) is re-enabled (false); any other existing role is refused.';

CREATE FUNCTION pam_totp.revoke_host(p_host text) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pam_totp.hosts WHERE name = p_host AND revoked IS NULL)
       OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_host) THEN
        PERFORM pam_totp.audit_log(NULL, NULL, 'admin', format('revoke host %s (not a host)', p_host));
        RETURN false;
    END IF;
    EXECUTE format('ALTER ROLE %I NOLOGIN', p_host);
    EXECUTE format('REVOKE pam_totp_host FROM %I', p_host);
    UPDATE pam_totp.hosts SET revoked = clock_timestamp() WHERE name = p_host;
    PERFORM pam_totp.audit_log(NULL, NULL, 'admin', format('revoke host %s', p_host));
    RETURN true;
END $$;
COMMENT ON FUNCTION pam_totp.revoke_host(text) IS
'Admin. revoke_host(name) -> whether it was an enabled host: the role loses LOGIN and its '
'membership of pam_totp_host (no new connection, no further check). The role is kept so that '
'audit rows keep naming it. A session already open keeps running until it ends.';

CREATE TYPE pam_totp.host_status AS (
    name text,
    added timestamptz,
    revoked timestamptz,
    last_seen timestamptz     -- its latest audited call
);

CREATE FUNCTION pam_totp.hosts() RETURNS SETOF pam_totp.host_status
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pam_totp, pg_temp
AS $$
    SELECT h.name, h.added, h.revoked,
           (SELECT max(a.time) FROM pam_totp.audit a WHERE a.host = h.name)
    FROM pam_totp.hosts h ORDER BY h.name
$$;
COMMENT ON FUNCTION pam_totp.hosts() IS
'Admin. hosts() -> every host role add_host made: added, revoked, last audited call.';

-- Internal functions: EXECUTE for nobody but the owner (the functions above call them).
COMMENT ON FUNCTION pam_totp.key() IS
'Internal. The encryption key: the text of config.key_file (pg_read_file as the owner, a member '
'of pg_read_server_files), white space trimmed; an error if unset or under 32 characters.';
COMMENT ON FUNCTION pam_totp.key_id_of(text) IS
'Internal. A key''s id: the first 8 bytes of HMAC-SHA256(key, ''pam-totp key id''), hex. Tells '
'which key encrypted a row; reveals nothing about the key.';
COMMENT ON FUNCTION pam_totp.encrypt_secret(bytea, text) IS
'Internal. pgp_sym_encrypt_bytea with AES-256 (s2k-mode 1: the key is random, not a password).';
COMMENT ON FUNCTION pam_totp.decrypt_secret(bytea, text) IS
'Internal. pgp_sym_decrypt_bytea; "Wrong key or corrupt data" with another key.';
COMMENT ON FUNCTION pam_totp.code_at(bytea, text, integer, bigint) IS
'Internal. code_at(key, algorithm, digits, step): the RFC 6238 code of a time step '
'(HMAC-SHA1/256/512 over int8send(step), RFC 4226 dynamic truncation), equal to '
'totp::Generator::code_at_step.';
COMMENT ON FUNCTION pam_totp.matching_step(bytea, text, integer, integer, text, bigint, integer) IS
'Internal. matching_step(key, algorithm, digits, period, code, now, window): the highest step '
'of [now/period - window, now/period + window] (not below 0) whose code equals code, or NULL; '
'totp::Generator::matching_step.';
COMMENT ON FUNCTION pam_totp.now_s() IS
'Internal. The database clock (clock_timestamp()) in whole unix seconds: "now" for codes.';
COMMENT ON FUNCTION pam_totp.rfc3339(bigint) IS
'Internal. Unix seconds as 2026-11-23T19:00:00Z (timefmt::rfc3339).';
COMMENT ON FUNCTION pam_totp.locked_until_after(integer, bigint, integer, integer, integer) IS
'Internal. locked_until_after(failures, now, attempts, lock_seconds, max_lock_seconds): 0 below '
'attempts, else now + lock_seconds * 2^(failures - attempts), at most max_lock_seconds '
'(throttle::Throttle::locked_until_after).';
COMMENT ON FUNCTION pam_totp.recovery_match(text, text) IS
'Internal. recovery_match(normalised code, entry): SHA-256(salt || code) = hash for an entry '
'sha256:<salt-hex>:<hash-hex> (recovery::find for one entry).';
COMMENT ON FUNCTION pam_totp.recovery_normalize(text) IS
'Internal. recovery::normalize (dashes, spaces, tabs removed; lower-cased), NULL when empty or '
'over 64 bytes (not looked at as a recovery code).';
COMMENT ON FUNCTION pam_totp.stored_rhost(text) IS
'Internal. At most 255 bytes of rhost, cut on a character boundary (flow::stored_rhost).';
COMMENT ON FUNCTION pam_totp.recovery_blob(text[], text) IS
'Internal. The encrypted recovery list (JSON [{"h": entry, "b": null}]) of these entries, '
'validated as sha256:<salt-hex:8+ bytes>:<hash-hex:32 bytes>, lower-cased, de-duplicated.';
COMMENT ON FUNCTION pam_totp.recovery_list(bytea, text) IS
'Internal. The decrypted recovery list (JSON array of {"h": entry, "b": burned-at or null}).';
COMMENT ON FUNCTION pam_totp.recovery_left(jsonb) IS
'Internal. How many entries of a recovery list are not burned.';
COMMENT ON FUNCTION pam_totp.audit_log(text, text, text, text) IS
'Internal. One audit row: user, host = session_user (the caller''s login role), rhost '
'(stored_rhost), outcome, reason.';

-- ---------------------------------------------------------------------------------------
-- Privileges: nothing for PUBLIC; each group role exactly its functions.
-- ---------------------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA pam_totp FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pam_totp FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pam_totp.enrolment(text) TO pam_totp_host;
GRANT EXECUTE ON FUNCTION pam_totp.check(text, text, text, integer) TO pam_totp_host;
GRANT EXECUTE ON FUNCTION pam_totp.outcome(uuid) TO pam_totp_host;
GRANT EXECUTE ON FUNCTION
    pam_totp.enrol(text, bytea, text, integer, integer, text, text[], boolean),
    pam_totp.activate(text, text, integer),
    pam_totp.disable(text),
    pam_totp.unlock(text, boolean),
    pam_totp.renew_recovery(text, text[]),
    pam_totp.status(text),
    pam_totp.settings(),
    pam_totp.set_settings(integer, integer, integer, integer, integer),
    pam_totp.add_host(text),
    pam_totp.revoke_host(text),
    pam_totp.hosts()
TO pam_totp_admin;

INSERT INTO pam_totp.schema_version (version, name) VALUES (1, '001_init');
RESET ROLE;

-- Per-relation and per-function statistics counters, the current transaction's included
-- (pg_stat_xact_user_tables): not for PUBLIC in this database, or a host could read how many
-- rows its own open check wrote. pg_read_all_stats (monitoring) keeps them.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_proc p
             WHERE p.pronamespace = 'pg_catalog'::regnamespace
               AND p.proname LIKE 'pg\_stat\_get\_%' AND p.pronargs = 1
               AND p.proargtypes[0] = 'oid'::regtype
    LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO pg_read_all_stats', f);
    END LOOP;
END $$;

-- pgcrypto's functions (owned by the superuser who created the extension): not for PUBLIC
-- (hosts have USAGE on the schema); the owner's functions call them.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pam_totp FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pam_totp TO pam_totp_owner;
