"""checkout_confirm: a payment's confirmation as one PostgreSQL function

Revision ID: 5c1e0a7d9b3f
Revises: bbf19d279994
Create Date: 2026-11-26 06:40:00

On PostgreSQL the whole confirmation (lock, checks, event id, retire, ledger, order, counters,
outbox) runs server-side as one statement, its own transaction: one round trip instead of a dozen,
writing the same rows as the Python path in carbon/checkout/service.py (SQLite). See decision 0008.
"""
from alembic import op

revision = '5c1e0a7d9b3f'
down_revision = 'bbf19d279994'
branch_labels = None
depends_on = None

PUBLIC_ID = r"""
CREATE FUNCTION diandian_public_id(prefix text) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
-- Like carbon.core.ids.new_public_id: prefix, '_', 12 characters of a 32-letter alphabet, drawn from
-- the random bytes of a version-4 UUID (bytes 6 and 8 carry version and variant bits: skipped).
-- PL/pgSQL, not SQL: a SQL function with an aggregate is planned again at every statement.
DECLARE
    random_bytes bytea := uuid_send(gen_random_uuid());
    id text := prefix || '_';
    position integer;
BEGIN
    FOREACH position IN ARRAY ARRAY[0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15] LOOP
        id := id || substr('0123456789abcdefghjkmnpqrstvwxyz', get_byte(random_bytes, position) % 32 + 1, 1);
    END LOOP;
    RETURN id;
END
$$
"""

CONFIRM = r"""
CREATE FUNCTION checkout_confirm(
    p_out_trade_no text, p_trade_state text, p_transaction_id text, p_total_fen bigint, p_currency text,
    p_appid text, p_mchid text, p_event_id text, p_provider_data json,
    p_expected_appid text, p_expected_mchid text, p_confirmable text[], p_payable text[],
    p_fee_rate numeric, p_now timestamptz, p_today date, p_lock_timeout text,
    OUT outcome text, OUT detail text)
LANGUAGE plpgsql AS $$
DECLARE
    v_payment payments%ROWTYPE;
    v_order orders%ROWTYPE;
    v_project projects%ROWTYPE;
    v_problems text[] := '{}';
    v_fee numeric;
    v_ledger_id integer;
    v_retirements text[];
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    SELECT * INTO v_payment FROM payments WHERE out_trade_no = p_out_trade_no FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'mismatch'; detail := 'unknown out_trade_no'; RETURN;
    END IF;
    IF p_total_fen IS DISTINCT FROM (v_payment.amount * 100)::bigint THEN
        v_problems := array_append(v_problems, 'amount');
    END IF;
    IF p_currency IS DISTINCT FROM 'CNY' THEN v_problems := array_append(v_problems, 'currency'); END IF;
    IF p_appid IS DISTINCT FROM p_expected_appid THEN v_problems := array_append(v_problems, 'appid'); END IF;
    IF p_mchid IS DISTINCT FROM p_expected_mchid THEN v_problems := array_append(v_problems, 'mchid'); END IF;
    IF cardinality(v_problems) > 0 THEN
        outcome := 'mismatch'; detail := array_to_string(v_problems, ', '); RETURN;
    END IF;

    outcome := CASE WHEN v_payment.status = 'confirmed' THEN 'duplicate'
                    WHEN p_trade_state <> 'SUCCESS' THEN 'ignored'
                    WHEN NOT v_payment.status = ANY (p_confirmable) THEN 'orphaned'
                    ELSE 'confirmed' END;
    SELECT * INTO v_order FROM orders WHERE id = v_payment.order_id;
    IF outcome = 'confirmed' AND NOT v_order.status = ANY (p_payable) THEN
        outcome := 'refused'; detail := v_order.status; RETURN;  -- the transition table forbids it
    END IF;
    IF p_event_id IS NOT NULL THEN
        INSERT INTO notify_events (provider, event_id, out_trade_no, outcome, received_at)
        VALUES (v_payment.provider, p_event_id, v_payment.out_trade_no, outcome, p_now)
        ON CONFLICT (provider, event_id) DO NOTHING;
    END IF;
    IF outcome = 'orphaned' THEN
        INSERT INTO outbox_events (kind, payload, created_at) VALUES ('payment.needs_refund', json_build_object(
            'out_trade_no', v_payment.out_trade_no, 'transaction_id', p_transaction_id, 'total_fen', p_total_fen),
            p_now);
    END IF;
    IF outcome <> 'confirmed' THEN
        RETURN;
    END IF;

    SELECT * INTO v_project FROM projects WHERE id = v_order.project_id;

    UPDATE payments SET status = 'confirmed', transaction_id = p_transaction_id, provider_data = p_provider_data,
                        confirmed_at = p_now
    WHERE id = v_payment.id;
    UPDATE orders SET status = 'paid', paid_at = p_now WHERE id = v_order.id;

    -- Retire the held serials, as they are, in the order's name; the reservations are consumed.
    WITH held AS (
        UPDATE reservations SET status = 'consumed'
        WHERE order_id = v_order.id AND status = 'active'
        RETURNING block_id, first_serial, last_serial
    ), retired AS (
        INSERT INTO retirements (public_id, block_id, order_id, project_id, vintage_label, first_serial,
                                 last_serial, quantity, kg, beneficiary_user_id, beneficiary_name, purpose,
                                 retired_at)
        SELECT diandian_public_id('ret'), held.block_id, v_order.id, v_order.project_id, vintages.label,
               held.first_serial, held.last_serial, held.last_serial - held.first_serial + 1,
               (held.last_serial - held.first_serial + 1) * v_project.unit_kg, v_order.user_id,
               v_order.beneficiary_name, v_order.purpose, p_now
        FROM held JOIN serial_blocks ON serial_blocks.id = held.block_id
                  JOIN vintages ON vintages.id = serial_blocks.vintage_id
        ORDER BY held.first_serial
        RETURNING public_id, first_serial
    )
    SELECT array_agg(public_id ORDER BY first_serial) INTO v_retirements FROM retired;

    v_fee := round(v_payment.amount * p_fee_rate, 2);
    INSERT INTO ledger_transactions (public_id, kind, reference, memo, created_at)
    VALUES (diandian_public_id('ltx'), 'payment', v_order.public_id,
            v_payment.out_trade_no || ' ' || p_transaction_id, p_now)
    RETURNING id INTO v_ledger_id;
    INSERT INTO postings (transaction_id, account, unit, amount, created_at)
    SELECT v_ledger_id, account, unit, amount, p_now
    FROM (VALUES (1, 'cash:wechatpay', 'CNY', v_payment.amount),
                 (2, 'payable:project:' || v_project.public_id, 'CNY', -(v_payment.amount - v_fee)),
                 (3, 'revenue:platform_fee', 'CNY', -v_fee),
                 (4, 'retired:user:' || v_order.user_id, 'kg', v_order.kg),
                 (5, 'inventory:project:' || v_project.public_id, 'kg', -v_order.kg))
         AS entry (position, account, unit, amount)
    WHERE amount <> 0
    ORDER BY position;

    IF v_order.scene_id IS NOT NULL THEN
        INSERT INTO scene_daily_stats (scene_id, channel, day, visits, logins, footprints, grams_neutralized,
                                       money_raised)
        VALUES (v_order.scene_id, coalesce(v_order.channel, ''), p_today, 0, 0, 0, (v_order.kg * 1000)::bigint,
                v_order.amount)
        ON CONFLICT (scene_id, channel, day) DO UPDATE
        SET grams_neutralized = scene_daily_stats.grams_neutralized + excluded.grams_neutralized,
            money_raised = scene_daily_stats.money_raised + excluded.money_raised;
    END IF;

    INSERT INTO outbox_events (kind, payload, created_at) VALUES ('order.paid', json_build_object(
        'order', v_order.public_id, 'retirements', coalesce(to_json(v_retirements), '[]'::json)), p_now);
END
$$
"""


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite confirms in Python (carbon/checkout/service.py)
    op.execute(PUBLIC_ID)
    op.execute(CONFIRM)


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS checkout_confirm")
    op.execute("DROP FUNCTION IF EXISTS diandian_public_id")
