"""Who may use the service, and a record of what they did: accounts, roles, API tokens, sessions
(:mod:`.accounts`) and the hash-chained audit trail (:mod:`.audit`), kept in the service's state
folder with owner-only permissions."""

from thyronet.apps.access.accounts import ROLES, Accounts, User, default_state_dir, owner_only_folder
from thyronet.apps.access.audit import AuditLog, verify_audit_log

__all__ = ["ROLES", "Accounts", "AuditLog", "User", "default_state_dir", "owner_only_folder", "verify_audit_log"]
