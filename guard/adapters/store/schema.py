"""The state store's schema (SQLAlchemy Core), shared by every part of ``guard.adapters.store``.

Money columns are integers of 1e-10 USD; times are integer epoch seconds in UTC.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

usage_hours = sa.Table(
    "usage_hours", metadata,
    sa.Column("hour", sa.BigInteger, nullable=False, index=True),
    sa.Column("workspace_id", sa.String(64)),
    sa.Column("api_key_id", sa.String(64)),
    sa.Column("model", sa.String(128)),
    sa.Column("token_units", sa.BigInteger, nullable=False),
    sa.Column("web_search_units", sa.BigInteger, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("web_search_requests", sa.BigInteger, nullable=False),
)

usage_fetches = sa.Table(
    "usage_fetches", metadata,
    sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("fetched_at", sa.BigInteger, nullable=False),
    sa.Column("digest", sa.String(32)),  # of the hour's rows: a re-read that changed nothing
)

# --- running sums, kept with the rows they sum (guard.adapters.store.sums) -------------------

usage_scope_days = sa.Table(
    "usage_scope_days", metadata,
    sa.Column("scope", sa.String(16), primary_key=True),   # organization|workspace|api_key|model
    sa.Column("match", sa.String(128), primary_key=True),  # '' | workspace id or 'default' | …
    sa.Column("day", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("token_units", sa.BigInteger, nullable=False),
    sa.Column("web_search_units", sa.BigInteger, nullable=False),
    sa.Column("unpriced_units", sa.BigInteger, nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_write_tokens", sa.BigInteger, nullable=False),
    sa.Column("cache_read_tokens", sa.BigInteger, nullable=False),
    sa.Column("output_tokens", sa.BigInteger, nullable=False),
    sa.Column("web_search_requests", sa.BigInteger, nullable=False),
    sa.Index("ix_usage_scope_days_day", "day", "scope"),
)

billed_scope_days = sa.Table(
    "billed_scope_days", metadata,
    sa.Column("scope", sa.String(16), primary_key=True),
    sa.Column("match", sa.String(128), primary_key=True),
    sa.Column("day", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("token_units", sa.BigInteger, nullable=False),
    sa.Column("other_units", sa.BigInteger, nullable=False),
    sa.Column("list_units", sa.BigInteger, nullable=False),
    sa.Index("ix_billed_scope_days_day", "day", "scope"),
)

usage_hour_totals = sa.Table(
    "usage_hour_totals", metadata,
    sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("units", sa.BigInteger, nullable=False),
)

day_versions = sa.Table(
    "day_versions", metadata,
    sa.Column("kind", sa.String(16), primary_key=True),    # usage | billed | cost
    sa.Column("day", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),   # +1 whenever the day's data changes
)

cost_days = sa.Table(
    "cost_days", metadata,
    sa.Column("day", sa.BigInteger, nullable=False, index=True),
    sa.Column("grouping", sa.String(16), nullable=False),  # "workspace" | "model"
    sa.Column("name", sa.String(128)),                      # workspace id (NULL: default) or model
    sa.Column("amount_units", sa.BigInteger, nullable=False),
)

billed_hours = sa.Table(
    "billed_hours", metadata,
    sa.Column("hour", sa.BigInteger, nullable=False, index=True),
    sa.Column("workspace_id", sa.String(64)),
    sa.Column("api_key_id", sa.String(64)),
    sa.Column("model", sa.String(128)),
    sa.Column("token_units", sa.BigInteger, nullable=False),
    sa.Column("other_units", sa.BigInteger, nullable=False),
    sa.Column("list_units", sa.BigInteger, nullable=False),
)

cost_fetches = sa.Table(
    "cost_fetches", metadata,
    sa.Column("day", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("fetched_at", sa.BigInteger, nullable=False),
)

provider_limits = sa.Table(
    "provider_limits", metadata,  # Anthropic's spend limits as last read (reference §7)
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("scope", sa.String(32), nullable=False),
    sa.Column("workspace_id", sa.String(64)),
    sa.Column("amount_cents", sa.BigInteger),
    sa.Column("period", sa.String(16), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("currency", sa.String(8), nullable=False),
)

meta = sa.Table(
    "meta", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)


# --- what the tick remembers ------------------------------------------------------------------

alert_states = sa.Table(
    "alert_states", metadata,
    sa.Column("budget", sa.String(128), primary_key=True),
    sa.Column("condition", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("period", sa.BigInteger, nullable=False),
    sa.Column("since", sa.BigInteger, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("clear_since", sa.BigInteger),
    sa.Column("last_notified", sa.BigInteger),
    sa.Column("notified_severity", sa.String(16)),
)

fallback_state = sa.Table(
    "fallback_state", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("tier", sa.String(64), nullable=False),
    sa.Column("level", sa.Integer, nullable=False),
    sa.Column("model", sa.String(128), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("firing", sa.Text, nullable=False),
    sa.Column("reload_pending", sa.Boolean, nullable=False),
    sa.Column("chain", sa.Text),                            # JSON list of model ids
    sa.Column("override_expires_at", sa.BigInteger),
    sa.Column("override_by", sa.String(128)),
    sa.Column("override_reason", sa.Text),
)

overrides = sa.Table(
    "overrides", metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("tier", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("who", sa.String(128), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger, nullable=False, index=True),
    sa.Column("who", sa.String(128), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("before", sa.Text),
    sa.Column("after", sa.Text),
    sa.Column("reason", sa.Text, nullable=False),
)

key_actions = sa.Table(
    "key_actions", metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("budget", sa.String(128), nullable=False),
    sa.Column("prior_status", sa.String(16), nullable=False),
    sa.Column("deactivated_at", sa.BigInteger, nullable=False),
    sa.Column("period", sa.BigInteger, nullable=False),
)

# --- notifications ------------------------------------------------------------------------------

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedup", sa.String(255), nullable=False, unique=True),
    sa.Column("incident", sa.String(255), nullable=False, index=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("blocks", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # owed | delivered | superseded
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("claimed_until", sa.BigInteger),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.BigInteger),
    sa.Column("sending_since", sa.BigInteger),  # first claim: a post may have reached Slack
)

incidents = sa.Table(
    "incidents", metadata,
    sa.Column("incident", sa.String(255), primary_key=True),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("ts", sa.String(64), nullable=False),
    sa.Column("posted_at", sa.BigInteger, nullable=False),
)

silences = sa.Table(
    "silences", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("budget", sa.String(128), nullable=False),
    sa.Column("condition", sa.String(32)),
    sa.Column("starts_at", sa.BigInteger, nullable=False),
    sa.Column("ends_at", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("who", sa.String(128), nullable=False),
)

leases = sa.Table(
    "leases", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("epoch", sa.BigInteger),  # the fencing token: +1 at every change of holder
)


ADDED_COLUMNS: tuple[tuple[sa.Table, sa.Column[object]], ...] = (*(
    (fallback_state, fallback_state.c[name])
    for name in ("chain", "override_expires_at", "override_by", "override_reason")),
    (outbox, outbox.c.sending_since), (leases, leases.c.epoch),
    (usage_fetches, usage_fetches.c.digest))
"""Nullable columns added after 0.1: a store created by 0.1 gains them at start."""
