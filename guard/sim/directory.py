"""Workspaces and API keys of the simulated Admin API (reference §4.1, §4.2).

Key status and name changes live in server memory (``KeyBook``); they do not change the
generated usage, which is a pure function of the seed.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, replace
from typing import Any

from guard.sim import params
from guard.sim.org import SimOrg
from guard.sim.params import ApiError, Query, bad_request
from guard.sim.population import SimApiKey, SimWorkspace

Json = dict[str, Any]
KEY_STATUSES = ("active", "inactive", "archived", "expired")
WRITABLE_STATUSES = ("active", "inactive", "archived")


def workspace_json(space: SimWorkspace) -> Json:
    """A ``workspace`` object in the newest shape."""
    return {
        "type": "workspace",
        "id": space.id,
        "name": space.name,
        "created_at": params.iso(space.created_at),
        "archived_at": params.iso(space.archived_at) if space.archived_at else None,
        "display_color": space.display_color,
        "tags": {},
        "data_residency": {"workspace_geo": "us",
                           "default_inference_geo": space.default_inference_geo,
                           "allowed_inference_geos": "unrestricted"},
    }


def api_key_json(key: SimApiKey, default_workspace_id: str) -> Json:
    """An ``api_key`` object: the deprecated top-level ``workspace_id`` is ``null`` for the
    default workspace, while ``scope`` carries the default workspace's real id."""
    return {
        "type": "api_key",
        "id": key.id,
        "name": key.name,
        "status": key.status,
        "created_at": params.iso(key.created_at),
        "expires_at": None,
        "created_by": {"id": "user_01SimAdminUser0000000000", "type": "user"},
        "partial_key_hint": key.partial_key_hint,
        "scope": {"type": "workspace", "workspace_id": key.workspace_id or default_workspace_id},
        "principal": None,
        "workspace_id": key.workspace_id,
    }


def list_page(objects: list[Json], query: Query) -> Json:
    """``{data, has_more, first_id, last_id}`` with ``limit``, ``after_id`` and ``before_id``."""
    count = params.limit(query, 20, 1000)
    ids = [obj["id"] for obj in objects]
    after, before = params.single(query, "after_id"), params.single(query, "before_id")
    if after is not None and before is not None:
        raise bad_request("after_id and before_id cannot both be set")
    if before is not None:
        end = _position(ids, before, "before_id")
        page, has_more = objects[max(0, end - count):end], end > count
    else:
        start = _position(ids, after, "after_id") + 1 if after is not None else 0
        page, has_more = objects[start:start + count], start + count < len(objects)
    return {"data": page, "has_more": has_more,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None}


def _position(ids: list[str], wanted: str, name: str) -> int:
    try:
        return ids.index(wanted)
    except ValueError:
        raise bad_request(f"{name}: no object with id {wanted!r}") from None


def list_workspaces(org: SimOrg, query: Query) -> Json:
    """``GET /v1/organizations/workspaces``."""
    include_archived = params.flag(query, "include_archived")
    spaces = [workspace_json(space) for space in org.workspaces
              if include_archived or space.archived_at is None]
    return list_page(spaces, query)


def get_workspace(org: SimOrg, workspace_id: str) -> Json:
    """``GET /v1/organizations/workspaces/{id}``."""
    for space in org.workspaces:
        if space.id == workspace_id:
            return workspace_json(space)
    raise ApiError(404, f"workspace {workspace_id!r} not found")


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """A validated ``POST /v1/organizations/api_keys/{id}`` body."""

    name: str | None
    status: str | None

    @classmethod
    def parse(cls, body: bytes) -> KeyUpdate:
        """Validate the JSON body: optional ``name`` (string) and ``status``."""
        try:
            data = json.loads(body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad_request("request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise bad_request("request body must be a JSON object")
        name, status = data.get("name"), data.get("status")
        if name is not None and not isinstance(name, str):
            raise bad_request("name: must be a string")
        if status is not None and status not in WRITABLE_STATUSES:
            raise bad_request(f"status: must be one of {', '.join(WRITABLE_STATUSES)}")
        return cls(name, status)


class KeyBook:
    """The organization's API keys as the server currently has them (thread-safe)."""

    def __init__(self, org: SimOrg) -> None:
        self._lock = threading.Lock()
        self._keys = {key.id: key for key in org.api_keys}
        self._default_workspace_id = org.default_workspace_id

    def status(self, key_id: str) -> str:
        """The key's current status; ``KeyError`` for an unknown id."""
        with self._lock:
            return self._keys[key_id].status

    def listing(self, query: Query) -> Json:
        """``GET /v1/organizations/api_keys`` with ``status`` and ``workspace_id`` filters."""
        status = params.single(query, "status")
        if status is not None and status not in KEY_STATUSES:
            raise bad_request(f"status: must be one of {', '.join(KEY_STATUSES)}")
        workspace = params.single(query, "workspace_id")
        with self._lock:
            keys = list(self._keys.values())
        chosen = [self._json(key) for key in keys
                  if status in (None, key.status) and workspace in (None, self._home(key))]
        return list_page(chosen, query)

    def get(self, key_id: str) -> Json:
        """``GET /v1/organizations/api_keys/{id}``."""
        with self._lock:
            return self._json(self._find(key_id))

    def update(self, key_id: str, body: bytes) -> Json:
        """``POST /v1/organizations/api_keys/{id}``: change name and/or status."""
        change = KeyUpdate.parse(body)
        with self._lock:
            key = self._find(key_id)
            key = replace(key, name=change.name or key.name, status=change.status or key.status)
            self._keys[key_id] = key
            return self._json(key)

    def _find(self, key_id: str) -> SimApiKey:
        try:
            return self._keys[key_id]
        except KeyError:
            raise ApiError(404, f"api key {key_id!r} not found") from None

    def _home(self, key: SimApiKey) -> str:
        """The key's workspace id, the default workspace's real id included."""
        return key.workspace_id or self._default_workspace_id

    def _json(self, key: SimApiKey) -> Json:
        return api_key_json(key, self._default_workspace_id)
