"""Append-only audit tables on PostgreSQL: a trigger refuses every UPDATE, and every DELETE
except from inside `comcenter_audit_purge`, the retention purge (SECURITY DEFINER: it runs
with its owner's rights, so the application's role needs no DELETE privilege at all). See
audit/database.py for the application role's privileges. SQLite has neither (embedded use)."""

from __future__ import annotations

from django.db import migrations

INSTALL = """
CREATE OR REPLACE FUNCTION comcenter_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('comcenter.audit_purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit lineage is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_record_append_only BEFORE UPDATE OR DELETE ON audit_auditrecord
    FOR EACH ROW EXECUTE FUNCTION comcenter_audit_append_only();
CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE ON audit_auditseal
    FOR EACH ROW EXECUTE FUNCTION comcenter_audit_append_only();

-- The one way to delete audit rows: whole seals, oldest first, sealed before `cutoff` (never
-- later than 30 days ago, whatever the caller asks), at most `max_seals` of them, never the
-- newest seal, which stays as the anchor. It writes its own lineage row naming the first
-- kept seal and its prev_hash, so what remains verifies from that seal (audit_verify).
CREATE OR REPLACE FUNCTION comcenter_audit_purge(cutoff timestamptz, max_seals integer)
RETURNS TABLE (seals bigint, records bigint, first_kept_seq bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    oldest bigint;
    stop bigint;
    through bigint;
    through_id bigint;
    kept_prev text;
    n_seals bigint;
    n_records bigint;
BEGIN
    IF cutoff > now() - interval '30 days' THEN
        RAISE EXCEPTION 'audit purge refused: % is less than 30 days ago', cutoff
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT min(s.seq) INTO oldest FROM audit_auditseal s;
    SELECT coalesce(min(s.seq), (SELECT max(t.seq) FROM audit_auditseal t)) INTO stop
        FROM audit_auditseal s WHERE s.sealed_at >= cutoff;
    through := least(stop - 1, oldest + greatest(max_seals, 1) - 1);
    IF through IS NULL OR through < oldest THEN
        RETURN QUERY SELECT 0::bigint, 0::bigint, oldest;
        RETURN;
    END IF;
    SELECT s.last_id INTO through_id FROM audit_auditseal s WHERE s.seq = through;
    SELECT s.prev_hash INTO kept_prev FROM audit_auditseal s WHERE s.seq = through + 1;
    PERFORM set_config('comcenter.audit_purge', 'on', true);
    DELETE FROM audit_auditrecord r WHERE r.id <= through_id;
    GET DIAGNOSTICS n_records = ROW_COUNT;
    DELETE FROM audit_auditseal s WHERE s.seq <= through;
    GET DIAGNOSTICS n_seals = ROW_COUNT;
    PERFORM set_config('comcenter.audit_purge', 'off', true);
    INSERT INTO audit_auditrecord (kind, request_id, recipient_id, actor, data)
    VALUES ('audit.purged', '', '', 'retention', jsonb_build_object(
        'seals', n_seals, 'records', n_records, 'through_seq', through,
        'through_id', through_id, 'first_kept_seq', through + 1, 'anchor', kept_prev,
        'cutoff', cutoff));
    RETURN QUERY SELECT n_seals, n_records, through + 1;
END $$;
REVOKE ALL ON FUNCTION comcenter_audit_purge(timestamptz, integer) FROM PUBLIC;
"""

UNINSTALL = """
DROP FUNCTION IF EXISTS comcenter_audit_purge(timestamptz, integer);
DROP TRIGGER IF EXISTS audit_seal_append_only ON audit_auditseal;
DROP TRIGGER IF EXISTS audit_record_append_only ON audit_auditrecord;
DROP FUNCTION IF EXISTS comcenter_audit_append_only();
"""


def _on_postgres(sql: str):  # type: ignore[no-untyped-def]
    def run(apps, schema_editor):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            # No parameters: the SQL's own % signs are not placeholders.
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_insert_only_seals")]

    operations = [migrations.RunPython(_on_postgres(INSTALL), _on_postgres(UNINSTALL))]
