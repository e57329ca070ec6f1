"""A PostgREST stand-in for tests: an `httpx.MockTransport` handler that serves the
subset of the PostgREST API the Supabase store uses by running it on a real PostgreSQL
schema (one with the migrations applied, see tests/store/pg_support.py).

So the Supabase store is tested against the real SQL functions, constraints, RLS grants
(every request runs as `service_role`, like PostgREST with the service-role key) and
JSON encoding of Postgres itself, with no PostgREST binary and no network.

Response shapes follow PostgREST:

* rpc bodies are built with the same aggregates as PostgREST's `asJsonF`
  (PostgREST/postgrest, src/PostgREST/Query/SqlFragment.hs): a scalar function answers
  its value (`json_agg(...)->0`, `null` when none), a SETOF scalar function a JSON array
  of values, a SETOF table function a JSON array of row objects;
* errors carry `{"code", "details", "hint", "message"}` and the HTTP status of the
  SQLSTATE -> status table in https://docs.postgrest.org/en/latest/references/errors.html
  (23505 -> 409, P0001 -> 400, 08* -> 503, 42883 -> 404, other -> 400, ...); an unknown
  function is `404 PGRST202`, an unknown table `404 PGRST205`;
* table reads answer a JSON array with `Content-Range`; PATCH/POST/DELETE answer
  204/201 with no body under `Prefer: return=minimal`, the rows under
  `return=representation`.

It also records every request (method, path, query, headers, JSON body) and can inject
faults: answer the next requests with a status (503) without running them, raise a
transport error before running them (connection refused, timeout), run them and then
lose the answer (a read timeout after the commit), or delay them.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import psycopg
from psycopg import sql

REST_PREFIX = "/rest/v1/"

# SQLSTATE -> HTTP status, most specific first (docs.postgrest.org, references/errors).
_STATUS_BY_SQLSTATE: tuple[tuple[str, int], ...] = (
    ("23503", 409),
    ("23505", 409),
    ("25006", 405),
    ("53400", 500),
    ("P0001", 400),
    ("42883", 404),
    ("42P01", 404),
    ("42P17", 500),
    ("42501", 403),
    ("08", 503),
    ("09", 500),
    ("0L", 403),
    ("0P", 403),
    ("25", 500),
    ("28", 403),
    ("2D", 500),
    ("38", 500),
    ("39", 500),
    ("3B", 500),
    ("40", 500),
    ("53", 503),
    ("54", 500),
    ("55", 500),
    ("57", 500),
    ("58", 500),
    ("F0", 500),
    ("HV", 500),
    ("P0", 500),
    ("XX", 500),
)

_FILTER_OPS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "LIKE",
    "ilike": "ILIKE",
}
_RESERVED_PARAMS = {"select", "order", "limit", "offset", "on_conflict", "columns"}


def http_status_for(sqlstate: str | None) -> int:
    if not sqlstate:
        return 500
    for prefix, status in _STATUS_BY_SQLSTATE:
        if sqlstate.startswith(prefix):
            return status
    return 400


def error_body(
    code: str, message: str, *, details: str | None = None, hint: str | None = None
) -> dict[str, Any]:
    return {"code": code, "details": details, "hint": hint, "message": message}


def json_response(status: int, body: Any, request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
        request=request,
    )


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str  # decoded, in the order sent
    params: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    json: Any


@dataclass
class Fault:
    """What happens to the next request: `status` answers it without running it, `raise_`
    raises before running it, `lose` runs it then raises (the answer is lost), `delay_s`
    waits before running it."""

    status: int | None = None
    body: Any = None
    raise_: type[Exception] | None = None
    lose: type[Exception] | None = None
    delay_s: float = 0.0


@dataclass
class _Function:
    name: str
    arg_names: list[str]
    arg_types: list[str]
    required: set[str]
    returns_set: bool
    returns_composite: bool


class _Reply(Exception):
    """A finished HTTP answer raised from deep inside request handling."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass
class PostgrestBridge:
    schema: str
    api_key: str | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    _faults: deque[Fault] = field(default_factory=deque)
    _conn: Any = None
    _profile: str = "public"

    # --- test controls ------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def fail_next(self, times: int = 1, *, status: int = 503, body: Any = None) -> None:
        self._faults.extend(Fault(status=status, body=body) for _ in range(times))

    def raise_next(self, times: int = 1, *, error: type[Exception] = httpx.ConnectError) -> None:
        self._faults.extend(Fault(raise_=error) for _ in range(times))

    def lose_next(self, times: int = 1, *, error: type[Exception] = httpx.ReadTimeout) -> None:
        self._faults.extend(Fault(lose=error) for _ in range(times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        self._faults.extend(Fault(delay_s=seconds) for _ in range(times))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            from tests.store.pg_support import connect

            self._conn = connect(self.schema)
            self._conn.execute("SET TIME ZONE 'UTC'")  # what PostgREST on Supabase uses
        return self._conn

    # --- the handler --------------------------------------------------------------
    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        params = list(request.url.params.multi_items())
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.url.path,
                query=unquote(request.url.query.decode()),
                params=params,
                headers={k.lower(): v for k, v in request.headers.items()},
                json=body,
            )
        )
        fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            if fault.status is not None:
                return json_response(fault.status, fault.body, request)
            if fault.raise_ is not None:
                raise fault.raise_("injected fault", request=request)
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
        response = self._serve(request, params, body)
        if fault is not None and fault.lose is not None:
            raise fault.lose("injected fault: answer lost", request=request)
        return response

    def _serve(self, request: httpx.Request, params: list[tuple[str, str]], body: Any) -> httpx.Response:
        denied = self._check_key(request)
        if denied is not None:
            return denied
        path = request.url.path
        if not path.startswith(REST_PREFIX):
            return json_response(404, error_body("PGRST125", f"Invalid path {path}"), request)
        resource = path[len(REST_PREFIX) :]
        prefer = request.headers.get("prefer", "")
        # Errors name the schema the client asked for (Content-Profile), as PostgREST does.
        self._profile = (
            request.headers.get("content-profile") or request.headers.get("accept-profile") or "public"
        )
        try:
            if resource.startswith("rpc/"):
                if request.method != "POST":
                    raise _Reply(405, error_body("PGRST101", "only POST is served for rpc by this bridge"))
                status, text, headers = self._rpc(resource[4:], body or {})
            else:
                status, text, headers = self._table(request.method, resource, params, body, prefer)
        except _Reply as reply:
            return json_response(reply.status, reply.body, request)
        except psycopg.Error as exc:
            return self._pg_error(exc, request)
        if text:
            headers = {"content-type": "application/json; charset=utf-8", **headers}
        return httpx.Response(
            status, content=text.encode() if text else b"", headers=headers, request=request
        )

    def _check_key(self, request: httpx.Request) -> httpx.Response | None:
        """Supabase's gateway refuses a request without the project's key (401)."""
        if self.api_key is None:
            return None
        key = request.headers.get("apikey")
        if not key:
            return json_response(401, {"message": "No API key found in request"}, request)
        if key != self.api_key or request.headers.get("authorization") != f"Bearer {self.api_key}":
            return json_response(401, {"message": "Invalid API key"}, request)
        return None

    @staticmethod
    def _pg_error(exc: psycopg.Error, request: httpx.Request) -> httpx.Response:
        diag = exc.diag
        if exc.sqlstate is None:  # the connection itself failed: PostgREST answers 503
            body = error_body("PGRST001", "Database client error. Retrying the connection.")
            return json_response(503, body, request)
        body = error_body(
            exc.sqlstate,
            diag.message_primary or str(exc),
            details=diag.message_detail,
            hint=diag.message_hint,
        )
        return json_response(http_status_for(exc.sqlstate), body, request)

    def _run(self, query: sql.Composable, args: list[Any]) -> str | None:
        """One request, one transaction, as the service role (RLS and grants apply)."""
        conn = self.connection
        with conn.transaction():
            conn.execute("SET LOCAL ROLE service_role")
            row = conn.execute(query, args).fetchone()
        return row[0] if row else None

    # --- rpc ----------------------------------------------------------------------
    def _functions(self, name: str) -> list[_Function]:
        rows = self.connection.execute(
            "SELECT coalesce(p.proargnames, '{}'), p.pronargs, p.pronargdefaults, p.proretset,"
            "       t.typtype = 'c',"
            "       ARRAY(SELECT format_type(a.oid, NULL) FROM unnest(p.proargtypes) WITH ORDINALITY a(oid, n)"
            "             ORDER BY a.n)"
            " FROM pg_proc p JOIN pg_type t ON t.oid = p.prorettype"
            " WHERE p.pronamespace = %s::regnamespace AND p.proname = %s",
            (self.schema, name),
        ).fetchall()
        functions = []
        for names, nargs, ndefaults, returns_set, composite, types in rows:
            names = list(names)[:nargs]
            functions.append(
                _Function(name, names, list(types), set(names[: nargs - ndefaults]), returns_set, composite)
            )
        return functions

    def _resolve(self, name: str, args: dict[str, Any]) -> _Function:
        given = set(args)
        matches = [f for f in self._functions(name) if given <= set(f.arg_names) and f.required <= given]
        signature = f"{self._profile}.{name}({', '.join(sorted(given))})"
        if not matches:
            raise _Reply(
                404,
                error_body(
                    "PGRST202",
                    f"Could not find the function {signature} in the schema cache",
                    details=f"Searched for the function {self._profile}.{name} with parameters "
                    f"{', '.join(sorted(given))} but no matches were found in the schema cache.",
                    hint="If a new function was created in the database with this name and parameters, "
                    "try reloading the schema cache.",
                ),
            )
        if len(matches) > 1:
            raise _Reply(
                300, error_body("PGRST203", f"Could not choose the best candidate function for {signature}")
            )
        return matches[0]

    def _rpc(self, name: str, args: dict[str, Any]) -> tuple[int, str, dict[str, str]]:
        if not isinstance(args, dict):
            raise _Reply(400, error_body("PGRST102", "rpc arguments must be a JSON object"))
        fn = self._resolve(name, args)
        names = [n for n in fn.arg_names if n in args]
        call_args = sql.SQL(", ").join(
            sql.SQL("{} := _args.{}").format(sql.Identifier(n), sql.Identifier(n)) for n in names
        )
        record = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(fn.arg_types[fn.arg_names.index(n)]))
            for n in names
        )
        call = sql.SQL("{}({})").format(sql.Identifier(name), call_args)
        source = (
            sql.SQL("FROM json_to_record(%s::json) AS _args({})").format(record) if names else sql.SQL("")
        )
        if fn.returns_composite:
            inner = sql.SQL("SELECT _r.* {} {} LATERAL {} _r").format(
                source, sql.SQL(",") if names else sql.SQL("FROM"), call
            )
            agg = "json_agg(_postgrest_t)" if fn.returns_set else "json_agg(_postgrest_t)->0"
        else:
            inner = sql.SQL("SELECT {} AS pgrst_scalar {}").format(call, source)
            agg = "json_agg(_postgrest_t.pgrst_scalar)" + ("" if fn.returns_set else "->0")
        empty = "'[]'" if fn.returns_set else "'null'"
        query = sql.SQL("SELECT coalesce({}, {})::text FROM ({}) _postgrest_t").format(
            sql.SQL(agg), sql.SQL(empty), inner
        )
        text = self._run(query, [json.dumps(args)] if names else [])
        return 200, text or "null", {}

    # --- tables -------------------------------------------------------------------
    def _columns(self, table: str) -> set[str]:
        rows = self.connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (self.schema, table),
        ).fetchall()
        if not rows:
            raise _Reply(
                404,
                error_body(
                    "PGRST205", f"Could not find the table '{self._profile}.{table}' in the schema cache"
                ),
            )
        return {r[0] for r in rows}

    def _table(
        self, method: str, table: str, params: list[tuple[str, str]], body: Any, prefer: str
    ) -> tuple[int, str, dict[str, str]]:
        self._columns(table)
        where, args = _where(table, params)
        returning = "return=representation" in prefer
        if method == "GET":
            return self._read(table, params, where, args)
        if method == "PATCH":
            return self._write(_update_sql(table, body, where), [json.dumps(body), *args], returning, 200)
        if method == "POST":
            rows = body if isinstance(body, list) else [body]
            query = _insert_sql(table, rows, prefer, dict(params).get("on_conflict"))
            return self._write(query, [json.dumps(rows)], returning, 201)
        if method == "DELETE":
            query = sql.SQL("DELETE FROM {} WHERE {} RETURNING {}.*").format(
                sql.Identifier(table), where, sql.Identifier(table)
            )
            return self._write(query, args, returning, 200)
        raise _Reply(405, error_body("PGRST117", f"Unsupported HTTP method: {method}"))

    def _read(
        self, table: str, params: list[tuple[str, str]], where: sql.Composable, args: list[Any]
    ) -> tuple[int, str, dict[str, str]]:
        options = dict(params)
        query = sql.SQL("SELECT {} FROM {} WHERE {}{}{}").format(
            _select_list(options.get("select", "*")),
            sql.Identifier(table),
            where,
            _order_by(options.get("order")),
            _limit(options),
        )
        text = self._run(
            sql.SQL("SELECT coalesce(json_agg(_postgrest_t), '[]')::text FROM ({}) _postgrest_t").format(
                query
            ),
            args,
        )
        count = len(json.loads(text or "[]"))
        offset = int(options.get("offset", 0))
        content_range = f"{offset}-{offset + count - 1}/*" if count else "*/*"
        return 200, text or "[]", {"content-range": content_range}

    def _write(
        self, statement: sql.Composable, args: list[Any], returning: bool, status: int
    ) -> tuple[int, str, dict[str, str]]:
        text = self._run(
            sql.SQL(
                "WITH _changed AS ({}) SELECT coalesce(json_agg(_changed), '[]')::text FROM _changed"
            ).format(statement),
            args,
        )
        if returning:
            return status, text or "[]", {}
        return (201 if status == 201 else 204), "", {}


# --- query-string grammar ---------------------------------------------------------------


def _select_list(select: str) -> sql.Composable:
    if select.strip() == "*":
        return sql.SQL("*")
    columns = [c.strip() for c in select.split(",") if c.strip()]
    if any("(" in c or ":" in c for c in columns):
        raise _Reply(400, error_body("PGRST100", "embedding and aliases are not served by this bridge"))
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def _order_by(order: str | None) -> sql.Composable:
    if not order:
        return sql.SQL("")
    terms = []
    for term in order.split(","):
        column, *modifiers = term.split(".")
        words = {"asc": "ASC", "desc": "DESC", "nullsfirst": "NULLS FIRST", "nullslast": "NULLS LAST"}
        suffix = " ".join(words[m] for m in modifiers)
        terms.append(sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(suffix)))
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)


def _limit(options: dict[str, str]) -> sql.Composable:
    clause = sql.SQL("")
    if "limit" in options:
        clause += sql.SQL(" LIMIT {}").format(sql.Literal(int(options["limit"])))
    if "offset" in options:
        clause += sql.SQL(" OFFSET {}").format(sql.Literal(int(options["offset"])))
    return clause


def _split_list(value: str) -> list[str]:
    """`(a,"b,c")` -> ["a", "b,c"]: PostgREST's `in` list, with double-quoted items."""
    items, current, quoted, escaped = [], [], False, False
    for char in value.strip()[1:-1]:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def _condition(table: str, column: str, expression: str) -> tuple[sql.Composable, list[Any]]:
    negate = expression.startswith("not.")
    if negate:
        expression = expression[4:]
    op, _, value = expression.partition(".")
    target = sql.Identifier(table, column)
    if op == "is":
        words = {"null": "NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
        if value not in words:
            raise _Reply(400, error_body("PGRST100", f"failed to parse filter (is.{value})"))
        condition: sql.Composable = sql.SQL("{} IS {}").format(target, sql.SQL(words[value]))
        args: list[Any] = []
    elif op == "in":
        condition, args = sql.SQL("{}::text = ANY(%s)").format(target), [_split_list(value)]
    elif op in _FILTER_OPS:
        condition, args = sql.SQL("{} {} %s").format(target, sql.SQL(_FILTER_OPS[op])), [value]
    else:
        raise _Reply(400, error_body("PGRST100", f"failed to parse filter ({op}.{value})"))
    return (sql.SQL("NOT ({})").format(condition) if negate else condition), args


def _where(table: str, params: list[tuple[str, str]]) -> tuple[sql.Composable, list[Any]]:
    conditions: list[sql.Composable] = []
    args: list[Any] = []
    for column, expression in params:
        if column in _RESERVED_PARAMS:
            continue
        condition, condition_args = _condition(table, column, expression)
        conditions.append(condition)
        args += condition_args
    if not conditions:
        return sql.SQL("TRUE"), args
    return sql.SQL(" AND ").join(conditions), args


def _update_sql(table: str, body: Any, where: sql.Composable) -> sql.Composable:
    if not isinstance(body, dict) or not body:
        raise _Reply(400, error_body("PGRST102", "PATCH needs a non-empty JSON object"))
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = _body.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in body
    )
    # json_populate_record gives every value the column's own type, as PostgREST does.
    return sql.SQL(
        "UPDATE {table} SET {assignments} FROM json_populate_record(NULL::{table}, %s::json) AS _body"
        " WHERE {where} RETURNING {table}.*"
    ).format(table=sql.Identifier(table), assignments=assignments, where=where)


def _insert_sql(table: str, rows: list[Any], prefer: str, on_conflict: str | None) -> sql.Composable:
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise _Reply(400, error_body("PGRST102", "POST needs a JSON object or an array of objects"))
    columns = list(dict.fromkeys(c for row in rows for c in row))
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    conflict = sql.SQL("")
    if on_conflict and "resolution=ignore-duplicates" in prefer:
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in on_conflict.split(","))
        conflict = sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(keys)
    elif on_conflict and "resolution=merge-duplicates" in prefer:
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in on_conflict.split(","))
        updates = sql.SQL(", ").join(
            sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in columns
        )
        conflict = sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(keys, updates)
    return sql.SQL(
        "INSERT INTO {table} ({names}) SELECT {names} FROM json_populate_recordset(NULL::{table}, %s::json)"
        "{conflict} RETURNING {table}.*"
    ).format(table=sql.Identifier(table), names=names, conflict=conflict)
