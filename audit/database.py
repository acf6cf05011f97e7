"""The database role the application runs as on PostgreSQL, so that it cannot change the
audit lineage (SPEC §11): `manage.py migrate` runs as the owner of the tables; web and
worker processes connect as a role that may read and write every table except that the audit
tables take no UPDATE, DELETE or TRUNCATE, and that owns nothing (only an owner can drop or
disable the append-only trigger). Its only way to delete audit rows is the retention function
`comcenter_audit_purge`, which it may EXECUTE."""

from __future__ import annotations

from audit.models import AuditRecord, AuditSeal

AUDIT_TABLES = (AuditRecord._meta.db_table, AuditSeal._meta.db_table)


def app_role_grants(role: str, *, schema: str = "public") -> list[str]:
    """The statements (run by the owner, after every migrate) that give `role` what the
    application needs and no more on the audit tables. `role` is quoted as an identifier."""
    who = '"' + role.replace('"', '""') + '"'
    audit = ", ".join(f"{schema}.{table}" for table in AUDIT_TABLES)
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {who}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {who}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {audit} FROM {who}",
        f"GRANT EXECUTE ON FUNCTION {schema}.comcenter_audit_purge(timestamptz, integer) TO {who}",
    ]
