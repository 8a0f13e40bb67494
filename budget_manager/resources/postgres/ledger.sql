-- The ledger operations as server-side functions: each is one statement from the client, one
-- transaction, no read-modify-write round trips. They follow budget_manager/ledger.py rule for
-- rule (the contract tests hold them to it). Periods are computed by the caller and passed in as
-- windows (period name, anchor, start, end per level), so no calendar arithmetic happens here.
--
-- Errors carry their own SQLSTATE, translated by budget_manager/stores/postgres.py:
--   BM001 unknown user    BM002 hierarchy changed    BM003 budget exceeded (DETAIL: JSON)
--   BM004 unknown hold    BM005 idempotency conflict BM006 invalid input    BM007 too many models
-- Each change also writes its history event(s) into bm_events, in its own transaction.
--
-- Every answer is JSON text: {"row": [...], "hold": [...], "rolled": [...], "alerts": [...],
-- "replayed": bool}: the user's bm_budgets row and the hold's bm_holds row as arrays, in the column
-- order of COLUMNS / HOLD_COLUMNS in budget_manager/stores/sql.py.
--
-- The hot paths (a charge, a hold, a settle of one budget) are written inline: in plpgsql a call
-- of a helper function costs about a fifth of the whole operation, all of it under the row lock.

-- Drop the functions of any earlier version first: CREATE OR REPLACE cannot rename parameters.
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE p.proname LIKE 'bm\_%' AND n.nspname = current_schema() LOOP
        EXECUTE 'DROP FUNCTION ' || f.signature;
    END LOOP;
END $$;

-- The answer's arrays (for the paths that are not hot).
CREATE OR REPLACE FUNCTION bm_row(b bm_budgets) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_array(b.total_budget, b.current_cost, b.model_cost, b.period, b.duration,
        b.created_at, b.last_updated_at, b.extra, b.parent, b.fired, b.on_unknown_model,
        b.on_store_error)
$$;

CREATE OR REPLACE FUNCTION bm_hold_row(h bm_holds) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_array(h.hold_id, h.user_id, h.amount, h.level_users, h.level_starts,
        h.expires_at, h.created_at, h.model, h.state, h.settled)
$$;

-- What open, unexpired holds hold against one budget.
CREATE OR REPLACE FUNCTION bm_held(p_project text, p_user text, p_now float8) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(amount), 0) FROM bm_hold_levels
    WHERE project = p_project AND level_user = p_user AND expires_at > p_now
$$;

-- The thresholds ``spent`` has reached and not announced yet (in ascending order).
CREATE OR REPLACE FUNCTION bm_crossed(
    p_spent numeric, p_total numeric, p_fired text, p_thresholds numeric[]
) RETURNS numeric[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(f ORDER BY f), '{}') FROM unnest(p_thresholds) AS t(f)
    WHERE p_spent > 0 AND p_spent >= p_total * f
      AND NOT (f = ANY (coalesce(string_to_array(nullif(p_fired, ''), ',')::numeric[], '{}')))
$$;

CREATE OR REPLACE FUNCTION bm_fired(p_fired text, p_crossed numeric[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(f::text, ',' ORDER BY f) FROM (
        SELECT DISTINCT f FROM unnest(
            coalesce(string_to_array(nullif(p_fired, ''), ',')::numeric[], '{}') || p_crossed
        ) AS t(f)) AS u
$$;

-- Lock the budgets of ``p_users`` in one order (primary key order), so that concurrent changes
-- of overlapping hierarchies never deadlock.
CREATE OR REPLACE FUNCTION bm_lock(p_project text, p_users text[]) RETURNS void
LANGUAGE sql AS $$
    SELECT 1 FROM bm_budgets WHERE project = p_project AND user_id = ANY (p_users)
    ORDER BY user_id FOR UPDATE
$$;

CREATE OR REPLACE FUNCTION bm_charge(
    p_project text, p_users text[], p_periods text[], p_anchors float8[], p_starts float8[],
    p_ends float8[], p_model text, p_amount numeric, p_now float8, p_limit boolean,
    p_key bytea, p_request bytea, p_key_since float8, p_thresholds numeric[],
    p_max_models integer, p_tokens text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n integer := cardinality(p_users);
    b bm_budgets;
    costs jsonb;
    first json;
    rolled text[] := '{}';
    alerts jsonb := '[]';
    crossed numeric[];
    held numeric;
    seen bytea;
    claimed boolean;
BEGIN
    IF p_key IS NOT NULL THEN
        -- Claim the key first: a concurrent request with the same key waits here for this
        -- transaction, then finds the key taken and answers as a repeat.
        INSERT INTO bm_charge_keys (id, request, created_at) VALUES (p_key, p_request, p_now)
        ON CONFLICT (id) DO UPDATE SET request = excluded.request, created_at = excluded.created_at
            WHERE bm_charge_keys.created_at < p_key_since
        RETURNING true INTO claimed;
        IF claimed IS NULL THEN
            SELECT request INTO seen FROM bm_charge_keys WHERE id = p_key;
            IF seen <> p_request THEN
                RAISE EXCEPTION USING ERRCODE = 'BM005', MESSAGE = 'idempotency key reused';
            END IF;
            SELECT * INTO b FROM bm_budgets WHERE project = p_project AND user_id = p_users[1];
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'BM001', MESSAGE = p_users[1];
            END IF;
            RETURN json_build_object('row', bm_row(b), 'replayed', true)::text;
        END IF;
    END IF;
    IF n > 1 THEN
        PERFORM bm_lock(p_project, p_users);
    END IF;
    FOR i IN 1..n LOOP
        SELECT * INTO b FROM bm_budgets WHERE project = p_project AND user_id = p_users[i] FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = CASE WHEN i = 1 THEN 'BM001' ELSE 'BM002' END,
                MESSAGE = p_users[i];
        END IF;
        IF b.parent IS DISTINCT FROM p_users[i + 1] OR b.period IS DISTINCT FROM p_periods[i]
           OR (p_periods[i] IS NOT NULL AND b.created_at IS DISTINCT FROM p_anchors[i]) THEN
            RAISE EXCEPTION USING ERRCODE = 'BM002', MESSAGE = p_users[i];
        END IF;
        IF p_starts[i] IS NOT NULL AND b.last_updated_at < p_starts[i] THEN
            b.current_cost := 0; b.model_cost := NULL; b.fired := NULL;
            b.last_updated_at := p_starts[i];
            rolled := rolled || p_users[i];
        END IF;
        IF p_limit THEN
            held := bm_held(p_project, p_users[i], p_now);
            IF b.current_cost + held + p_amount > b.total_budget THEN
                RAISE EXCEPTION USING ERRCODE = 'BM003', MESSAGE = p_users[i],
                    DETAIL = json_build_object('spent', b.current_cost::text, 'held', held::text,
                                               'budget', b.total_budget::text)::text;
            END IF;
        END IF;
        b.current_cost := b.current_cost + p_amount;
        IF p_model IS NOT NULL THEN
            costs := coalesce(b.model_cost::jsonb, '{}');
            IF NOT costs ? p_model THEN
                IF (SELECT count(*) FROM jsonb_object_keys(costs)) >= p_max_models THEN
                    RAISE EXCEPTION USING ERRCODE = 'BM007', MESSAGE = p_model,
                        DETAIL = p_max_models::text;
                END IF;
            END IF;
            b.model_cost := jsonb_set(costs, ARRAY[p_model], to_jsonb(
                (coalesce((costs ->> p_model)::numeric, 0) + p_amount)::text))::text;
        END IF;
        IF cardinality(p_thresholds) > 0 THEN
            crossed := bm_crossed(b.current_cost, b.total_budget, b.fired, p_thresholds);
            IF cardinality(crossed) > 0 THEN
                b.fired := bm_fired(b.fired, crossed);
                alerts := alerts || (SELECT jsonb_agg(jsonb_build_array(p_users[i], f, b.current_cost,
                    b.total_budget, CASE WHEN b.period IS NULL THEN NULL ELSE b.last_updated_at END))
                    FROM unnest(crossed) AS c(f));
            END IF;
        END IF;
        UPDATE bm_budgets SET current_cost = b.current_cost, model_cost = b.model_cost,
            last_updated_at = b.last_updated_at, fired = b.fired
        WHERE project = p_project AND user_id = p_users[i];
        IF i = 1 THEN
            first := json_build_array(b.total_budget, b.current_cost, b.model_cost, b.period,
                b.duration, b.created_at, b.last_updated_at, b.extra, b.parent, b.fired,
                b.on_unknown_model, b.on_store_error);
        END IF;
    END LOOP;
    INSERT INTO bm_events (project, at, kind, user_id, model, cost, tokens, window_start, window_end)
    VALUES (p_project, p_now, 'charge', p_users[1], p_model, p_amount, p_tokens, p_starts[1],
            p_ends[1]);
    RETURN json_build_object('row', first, 'rolled', rolled, 'alerts', alerts)::text;
END $$;

CREATE OR REPLACE FUNCTION bm_hold(
    p_project text, p_users text[], p_periods text[], p_anchors float8[], p_starts float8[],
    p_ends float8[], p_hold_id text, p_amount numeric, p_expires float8, p_now float8,
    p_model text, p_limit boolean
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    n integer := cardinality(p_users);
    b bm_budgets;
    h bm_holds;
    first json;
    rolled text[] := '{}';
    starts float8[] := '{}';
    held numeric;
BEGIN
    -- Claim the hold id before locking any budget: the lock is then held only for the check.
    INSERT INTO bm_holds (project, hold_id, user_id, amount, level_users, level_starts,
                          expires_at, created_at, model, state)
    VALUES (p_project, p_hold_id, p_users[1], p_amount, p_users, p_starts, p_expires, p_now,
            p_model, 'open')
    ON CONFLICT (project, hold_id) DO NOTHING
    RETURNING * INTO h;
    IF NOT FOUND THEN  -- taken already (a repeat, or another hold's id)
        SELECT * INTO h FROM bm_holds WHERE project = p_project AND hold_id = p_hold_id;
        IF h.user_id <> p_users[1] OR h.amount <> p_amount THEN
            RAISE EXCEPTION USING ERRCODE = 'BM005', MESSAGE = 'hold id used by another hold';
        END IF;
        SELECT * INTO b FROM bm_budgets WHERE project = p_project AND user_id = p_users[1];
        RETURN json_build_object('row', bm_row(b), 'hold', bm_hold_row(h), 'replayed', true)::text;
    END IF;
    IF n > 1 THEN
        PERFORM bm_lock(p_project, p_users);
    END IF;
    FOR i IN 1..n LOOP
        SELECT * INTO b FROM bm_budgets WHERE project = p_project AND user_id = p_users[i] FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = CASE WHEN i = 1 THEN 'BM001' ELSE 'BM002' END,
                MESSAGE = p_users[i];
        END IF;
        IF b.parent IS DISTINCT FROM p_users[i + 1] OR b.period IS DISTINCT FROM p_periods[i]
           OR (p_periods[i] IS NOT NULL AND b.created_at IS DISTINCT FROM p_anchors[i]) THEN
            RAISE EXCEPTION USING ERRCODE = 'BM002', MESSAGE = p_users[i];
        END IF;
        IF p_starts[i] IS NOT NULL AND b.last_updated_at < p_starts[i] THEN
            UPDATE bm_budgets SET current_cost = 0, model_cost = NULL, fired = NULL,
                last_updated_at = p_starts[i]
            WHERE project = p_project AND user_id = p_users[i];
            b.current_cost := 0; b.model_cost := NULL; b.fired := NULL;
            b.last_updated_at := p_starts[i];
            rolled := rolled || p_users[i];
        END IF;
        IF p_limit THEN
            held := bm_held(p_project, p_users[i], p_now);
            IF b.current_cost + held + p_amount > b.total_budget THEN
                RAISE EXCEPTION USING ERRCODE = 'BM003', MESSAGE = p_users[i],
                    DETAIL = json_build_object('spent', b.current_cost::text, 'held', held::text,
                                               'budget', b.total_budget::text)::text;
            END IF;
        END IF;
        starts := starts || CASE WHEN b.period IS NULL THEN NULL ELSE b.last_updated_at END;
        INSERT INTO bm_hold_levels (project, level_user, hold_id, amount, expires_at)
        VALUES (p_project, p_users[i], p_hold_id, p_amount, p_expires);
        IF i = 1 THEN
            first := json_build_array(b.total_budget, b.current_cost, b.model_cost, b.period,
                b.duration, b.created_at, b.last_updated_at, b.extra, b.parent, b.fired,
                b.on_unknown_model, b.on_store_error);
        END IF;
    END LOOP;
    IF starts IS DISTINCT FROM h.level_starts THEN  -- a period already started later than asked
        UPDATE bm_holds SET level_starts = starts WHERE project = p_project AND hold_id = p_hold_id
        RETURNING * INTO h;
    END IF;
    INSERT INTO bm_events (project, at, kind, user_id, model, cost, amount, hold_id, window_start,
                           window_end)
    VALUES (p_project, p_now, 'hold', p_users[1], p_model, 0, p_amount, p_hold_id, p_starts[1],
            p_ends[1]);
    RETURN json_build_object('row', first, 'hold', json_build_array(h.hold_id, h.user_id,
        h.amount, h.level_users, h.level_starts, h.expires_at, h.created_at, h.model, h.state,
        h.settled), 'rolled', rolled)::text;
END $$;

CREATE OR REPLACE FUNCTION bm_settle(
    p_project text, p_hold_id text, p_amount numeric, p_model text, p_thresholds numeric[],
    p_max_models integer, p_known jsonb, p_now float8, p_tokens text
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    h bm_holds;
    b bm_budgets;
    costs jsonb;
    first json;
    alerts jsonb := '[]';
    crossed numeric[];
    model text;
BEGIN
    SELECT * INTO h FROM bm_holds WHERE project = p_project AND hold_id = p_hold_id FOR UPDATE;
    IF NOT FOUND THEN
        IF p_known IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'BM004', MESSAGE = p_hold_id;
        END IF;
        h := ROW(p_project, p_hold_id, p_known ->> 'user', (p_known ->> 'amount')::numeric,
                 ARRAY(SELECT l ->> 0 FROM jsonb_array_elements(p_known -> 'levels') AS l),
                 ARRAY(SELECT (l ->> 1)::float8 FROM jsonb_array_elements(p_known -> 'levels') AS l),
                 (p_known ->> 'expires_at')::float8, (p_known ->> 'created_at')::float8,
                 p_known ->> 'model', 'open', NULL)::bm_holds;
    ELSIF h.state = 'settled' THEN
        SELECT * INTO b FROM bm_budgets WHERE project = p_project AND user_id = h.user_id;
        RETURN json_build_object('row', bm_row(b), 'hold', bm_hold_row(h), 'replayed', true)::text;
    END IF;
    model := coalesce(p_model, h.model);
    -- The hold first, so that the budgets' locks are held only for their own update.
    DELETE FROM bm_hold_levels WHERE project = p_project AND level_user = ANY (h.level_users)
        AND hold_id = p_hold_id;
    h.state := 'settled'; h.settled := p_amount; h.model := model;
    INSERT INTO bm_holds VALUES (h.*)
    ON CONFLICT (project, hold_id) DO UPDATE SET state = 'settled', settled = p_amount,
        model = excluded.model;
    IF cardinality(h.level_users) > 1 THEN
        PERFORM bm_lock(p_project, h.level_users);
    END IF;
    FOR i IN 1..cardinality(h.level_users) LOOP
        SELECT * INTO b FROM bm_budgets WHERE project = p_project AND user_id = h.level_users[i]
            FOR UPDATE;
        CONTINUE WHEN NOT FOUND;
        IF (b.period IS NULL AND h.level_starts[i] IS NULL)
           OR (b.period IS NOT NULL AND b.last_updated_at = h.level_starts[i]) THEN
            b.current_cost := b.current_cost + p_amount;
            IF model IS NOT NULL THEN
                costs := coalesce(b.model_cost::jsonb, '{}');
                IF NOT costs ? model THEN
                    IF (SELECT count(*) FROM jsonb_object_keys(costs)) >= p_max_models THEN
                        RAISE EXCEPTION USING ERRCODE = 'BM007', MESSAGE = model,
                            DETAIL = p_max_models::text;
                    END IF;
                END IF;
                b.model_cost := jsonb_set(costs, ARRAY[model], to_jsonb(
                    (coalesce((costs ->> model)::numeric, 0) + p_amount)::text))::text;
            END IF;
            IF cardinality(p_thresholds) > 0 THEN
                crossed := bm_crossed(b.current_cost, b.total_budget, b.fired, p_thresholds);
                IF cardinality(crossed) > 0 THEN
                    b.fired := bm_fired(b.fired, crossed);
                    alerts := alerts || (SELECT jsonb_agg(jsonb_build_array(h.level_users[i], f,
                        b.current_cost, b.total_budget,
                        CASE WHEN b.period IS NULL THEN NULL ELSE b.last_updated_at END))
                        FROM unnest(crossed) AS c(f));
                END IF;
            END IF;
            UPDATE bm_budgets SET current_cost = b.current_cost, model_cost = b.model_cost,
                fired = b.fired
            WHERE project = p_project AND user_id = h.level_users[i];
        END IF;
        IF i = 1 THEN
            first := json_build_array(b.total_budget, b.current_cost, b.model_cost, b.period,
                b.duration, b.created_at, b.last_updated_at, b.extra, b.parent, b.fired,
                b.on_unknown_model, b.on_store_error);
        END IF;
    END LOOP;
    INSERT INTO bm_events (project, at, kind, user_id, model, cost, tokens, hold_id, window_start)
    VALUES (p_project, p_now, 'settle', h.user_id, model, p_amount, p_tokens, p_hold_id,
            h.level_starts[1]);
    RETURN json_build_object('row', first, 'hold', json_build_array(h.hold_id, h.user_id,
        h.amount, h.level_users, h.level_starts, h.expires_at, h.created_at, h.model, h.state,
        h.settled), 'alerts', alerts)::text;
END $$;

CREATE OR REPLACE FUNCTION bm_release(p_project text, p_hold_id text, p_now float8) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    h bm_holds;
    b bm_budgets;
    again boolean;
BEGIN
    SELECT * INTO h FROM bm_holds WHERE project = p_project AND hold_id = p_hold_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'BM004', MESSAGE = p_hold_id;
    END IF;
    again := h.state <> 'open';
    IF NOT again THEN
        DELETE FROM bm_hold_levels WHERE project = p_project AND level_user = ANY (h.level_users)
            AND hold_id = p_hold_id;
        UPDATE bm_holds SET state = 'released' WHERE project = p_project AND hold_id = p_hold_id
        RETURNING * INTO h;
        INSERT INTO bm_events (project, at, kind, user_id, model, cost, amount, hold_id,
                               window_start)
        VALUES (p_project, p_now, 'release', h.user_id, h.model, 0, h.amount, p_hold_id,
                h.level_starts[1]);
    END IF;
    SELECT * INTO b FROM bm_budgets WHERE project = p_project AND user_id = h.user_id;
    RETURN json_build_object('row', CASE WHEN FOUND THEN bm_row(b) END,
                             'hold', bm_hold_row(h), 'replayed', again)::text;
END $$;

CREATE OR REPLACE FUNCTION bm_roll(
    p_project text, p_users text[], p_periods text[], p_anchors float8[], p_starts float8[],
    p_ends float8[], p_now float8
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    b bm_budgets;
    first json;
    rolled text[] := '{}';
BEGIN
    FOR i IN 1..cardinality(p_users) LOOP
        SELECT * INTO b FROM bm_budgets WHERE project = p_project AND user_id = p_users[i] FOR UPDATE;
        IF NOT FOUND THEN
            IF i = 1 THEN
                RAISE EXCEPTION USING ERRCODE = 'BM001', MESSAGE = p_users[1];
            END IF;
            CONTINUE;
        END IF;
        IF b.period IS DISTINCT FROM p_periods[i]
           OR (p_periods[i] IS NOT NULL AND b.created_at IS DISTINCT FROM p_anchors[i]) THEN
            RAISE EXCEPTION USING ERRCODE = 'BM002', MESSAGE = p_users[i];
        END IF;
        IF p_starts[i] IS NOT NULL AND b.last_updated_at < p_starts[i] THEN
            UPDATE bm_budgets SET current_cost = 0, model_cost = NULL, fired = NULL,
                last_updated_at = p_starts[i]
            WHERE project = p_project AND user_id = p_users[i]
            RETURNING * INTO b;
            rolled := rolled || p_users[i];
            INSERT INTO bm_events (project, at, kind, user_id, cost, window_start, window_end)
            VALUES (p_project, p_now, 'roll', p_users[i], 0, p_starts[i], p_ends[i]);
        END IF;
        IF i = 1 THEN
            first := bm_row(b);
        END IF;
    END LOOP;
    RETURN json_build_object('row', first, 'rolled', rolled)::text;
END $$;

CREATE OR REPLACE FUNCTION bm_reset(p_project text, p_user text, p_now float8) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    b bm_budgets;
BEGIN
    UPDATE bm_budgets SET current_cost = 0, model_cost = NULL
    WHERE project = p_project AND user_id = p_user RETURNING * INTO b;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'BM001', MESSAGE = p_user;
    END IF;
    INSERT INTO bm_events (project, at, kind, user_id, cost, window_start)
    VALUES (p_project, p_now, 'reset', p_user, 0,
            CASE WHEN b.period IS NULL THEN NULL ELSE b.last_updated_at END);
    RETURN json_build_object('row', bm_row(b))::text;
END $$;

-- Create or replace a budget: its parent must exist, no cycle, at most p_max_levels levels
-- counting the budgets below it. Hierarchy changes of a project are serialised.
CREATE OR REPLACE FUNCTION bm_put(
    p_project text, p_user text, p_total numeric, p_period text, p_duration text,
    p_created float8, p_start float8, p_extra text, p_parent text, p_unknown_model text,
    p_store_error text, p_max_levels integer, p_end float8, p_now float8
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    depth integer := 1;
    below integer;
    name text := p_parent;
    up text;
    b bm_budgets;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('bm:' || p_project, 0));
    WHILE name IS NOT NULL LOOP
        IF name = p_user THEN
            RAISE EXCEPTION USING ERRCODE = 'BM006',
                MESSAGE = format('parent %L of %L would make a cycle', p_parent, p_user);
        END IF;
        SELECT parent INTO up FROM bm_budgets WHERE project = p_project AND user_id = name;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'BM006', MESSAGE = format(
                'parent %L of %L has no budget; create the parent''s budget first', name, p_user);
        END IF;
        depth := depth + 1;
        EXIT WHEN depth > p_max_levels;
        name := up;
    END LOOP;
    WITH RECURSIVE below_user(user_id, level) AS (
        SELECT p_user, 1
        UNION ALL
        SELECT c.user_id, s.level + 1 FROM bm_budgets c JOIN below_user s
            ON c.project = p_project AND c.parent = s.user_id
        WHERE s.level <= p_max_levels
    )
    SELECT max(level) INTO below FROM below_user;
    IF depth + below - 1 > p_max_levels THEN
        RAISE EXCEPTION USING ERRCODE = 'BM006', MESSAGE = format(
            'budget %L would sit %s levels deep; at most %s levels (a user and %s ancestors) '
            'are allowed', p_user, depth + below - 1, p_max_levels, p_max_levels - 1);
    END IF;
    INSERT INTO bm_budgets (project, user_id, total_budget, current_cost, model_cost, period,
                            duration, created_at, last_updated_at, extra, parent, fired,
                            on_unknown_model, on_store_error)
    VALUES (p_project, p_user, p_total, 0, NULL, p_period, p_duration, p_created, p_start,
            p_extra, p_parent, NULL, p_unknown_model, p_store_error)
    ON CONFLICT (project, user_id) DO UPDATE SET
        total_budget = excluded.total_budget, current_cost = 0, model_cost = NULL,
        period = excluded.period, duration = excluded.duration,
        created_at = excluded.created_at, last_updated_at = excluded.last_updated_at,
        extra = excluded.extra, parent = excluded.parent, fired = NULL,
        on_unknown_model = excluded.on_unknown_model, on_store_error = excluded.on_store_error
    RETURNING * INTO b;
    INSERT INTO bm_events (project, at, kind, user_id, cost, amount, window_start, window_end)
    VALUES (p_project, p_now, 'create', p_user, 0, p_total,
            CASE WHEN p_period IS NULL THEN NULL ELSE p_start END, p_end);
    RETURN json_build_object('row', bm_row(b))::text;
END $$;

CREATE OR REPLACE FUNCTION bm_delete(p_project text, p_user text, p_now float8) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    kids text[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('bm:' || p_project, 0));
    SELECT array_agg(user_id ORDER BY user_id) INTO kids FROM (
        SELECT user_id FROM bm_budgets WHERE project = p_project AND parent = p_user
        ORDER BY user_id LIMIT 6) AS k;
    IF kids IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'BM006', MESSAGE = format(
            'budget %L is the parent of %s; delete or move them first', p_user,
            array_to_string(kids[1:5], ', ') || CASE WHEN cardinality(kids) > 5 THEN ', ...' ELSE '' END);
    END IF;
    DELETE FROM bm_budgets WHERE project = p_project AND user_id = p_user;
    IF NOT FOUND THEN
        RETURN json_build_object('replayed', true)::text;
    END IF;
    INSERT INTO bm_events (project, at, kind, user_id, cost) VALUES (p_project, p_now, 'delete', p_user, 0);
    RETURN json_build_object('replayed', false)::text;
END $$;
