"""Every table, column, function and parameter the Supabase store names exists in the
migrated schema, with the grants PostgREST's service role needs.

The names come from the store's module-level constants (TABLES, FUNCTIONS) and from its
source (every `_rpc`, `_select` and `_update` call in any module of its package), and
are checked against a fresh schema on the real PostgreSQL with the migrations applied:
a renamed column or a function that a migration forgot fails here, not in production
with a PGRST202.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from store import supabase as store_module
from tests.store.pg_support import connect, fresh_schema

# Functions whose rows the store reads with a table's column names.
ROWS_OF = {
    "sdr_claim_outbox_for": "outbox",
    "sdr_recent_messages": "messages",
    "sdr_lead_quotes": "orcamentos",
    "sdr_lead_technical_questions": "technical_questions",
    "sdr_due_meetings": "meetings",
}


@pytest.fixture(scope="module")
def catalog() -> Iterator[dict[str, object]]:
    with fresh_schema() as schema, connect(schema) as conn:
        columns: dict[str, set[str]] = {}
        for table, column in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
            (schema,),
        ):
            columns.setdefault(table, set()).add(column)
        functions: dict[str, list[dict[str, object]]] = {}
        for name, args, nargs, ndefaults, returns_set, returns, executable, public in conn.execute(
            "SELECT p.proname, coalesce(p.proargnames, '{}'), p.pronargs, p.pronargdefaults, p.proretset,"
            "       p.prorettype::regtype::text,"
            "       has_function_privilege('service_role', p.oid, 'EXECUTE'),"
            "       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
            "               WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')"
            " FROM pg_proc p WHERE p.pronamespace = %s::regnamespace",
            (schema,),
        ):
            names = list(args)[:nargs]
            functions.setdefault(name, []).append(
                {
                    "args": names,
                    "required": set(names[: nargs - ndefaults]),
                    "returns_set": returns_set,
                    "returns": returns.split(".")[-1],
                    "service_role": executable,
                    "public": public,
                }
            )
        privileges = {
            table: conn.execute(
                "SELECT has_table_privilege('service_role', format('%%I.%%I', %s::text, %s::text),"
                " 'SELECT, INSERT, UPDATE, DELETE')",
                (schema, table),
            ).fetchone()[0]
            for table in columns
        }
        yield {"columns": columns, "functions": functions, "privileges": privileges}


def test_every_table_and_column_the_store_names_exists(catalog: dict[str, object]) -> None:
    columns = catalog["columns"]
    assert isinstance(columns, dict)
    for table, names in store_module.TABLES.items():
        assert table in columns, f"table {table} is missing"
        missing = set(names) - columns[table]
        assert not missing, f"{table}: missing columns {sorted(missing)}"
        assert catalog["privileges"][table], f"service_role cannot read and write {table}"  # type: ignore[index]


def test_every_function_exists_once_with_the_parameters_the_store_passes(catalog: dict[str, object]) -> None:
    functions = catalog["functions"]
    assert isinstance(functions, dict)
    for name, params in store_module.FUNCTIONS.items():
        assert name in functions, f"function {name} is missing"
        # Two overloads with these names would make PostgREST answer PGRST203 (ambiguous).
        [fn] = functions[name]
        unknown = set(params) - set(fn["args"])
        assert not unknown, f"{name} has no parameter {sorted(unknown)}"
        unpassed = fn["required"] - set(params)
        assert not unpassed, f"{name} requires {sorted(unpassed)}, which the store never passes"
        assert fn["service_role"], f"service_role cannot execute {name}"
        assert not fn["public"], f"{name} is executable by PUBLIC"


def test_functions_whose_rows_are_read_by_column_return_that_table(catalog: dict[str, object]) -> None:
    functions = catalog["functions"]
    columns = catalog["columns"]
    assert isinstance(functions, dict) and isinstance(columns, dict)
    for name, table in ROWS_OF.items():
        [fn] = functions[name]
        assert fn["returns_set"] and fn["returns"] == table, (name, fn["returns"])
    read = {"outbox": store_module.OUTBOX_COLUMNS, "messages": store_module.MESSAGE_COLUMNS}
    for table, names in read.items():
        assert set(names) <= columns[table]


# --- the source uses only those names ---------------------------------------------------------


def _is_call(node: ast.AST, method: str) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == method
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
    )


def _trees() -> list[ast.Module]:
    """Every module of the store's package: a call moved to another part is still seen."""
    package = Path(inspect.getfile(store_module)).parent
    return [ast.parse(path.read_text(encoding="utf-8")) for path in sorted(package.glob("*.py"))]


def _calls(method: str) -> list[ast.Call]:
    return [node for tree in _trees() for node in ast.walk(tree) if _is_call(node, method)]  # type: ignore[misc]


def _literal(node: ast.AST) -> str:
    assert isinstance(node, ast.Constant) and isinstance(node.value, str), ast.dump(node)
    return node.value


def _dict_keys(node: ast.AST | None) -> set[str]:
    if not isinstance(node, ast.Dict):
        return set()
    return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}


def test_every_rpc_call_names_a_declared_function_and_parameters() -> None:
    calls = _calls("_rpc")
    assert len(calls) >= len(store_module.FUNCTIONS)
    used = set()
    for call in calls:
        name = _literal(call.args[0])
        used.add(name)
        assert name in store_module.FUNCTIONS, f"undeclared rpc {name}"
        passed = {kw.arg for kw in call.keywords}
        assert passed <= set(store_module.FUNCTIONS[name]), (name, passed)
    assert used == set(store_module.FUNCTIONS), (
        f"declared but never called: {set(store_module.FUNCTIONS) - used}"
    )


def test_every_table_request_names_declared_columns() -> None:
    for call in _calls("_select"):
        table = _literal(call.args[0])
        columns = set(_literal(call.args[1]).split(",")) if isinstance(call.args[1], ast.Constant) else set()
        for kw in call.keywords:
            if kw.arg in ("eq", "lte"):
                columns |= _dict_keys(kw.value)
            if kw.arg == "order":
                assert isinstance(kw.value, ast.Tuple)
                columns |= {_literal(e) for e in kw.value.elts}
        assert columns <= set(store_module.TABLES[table]), (table, columns - set(store_module.TABLES[table]))


def test_every_update_writes_declared_columns() -> None:
    methods = [n for tree in _trees() for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef)]
    checked = 0
    for method in methods:
        updates = [c for c in ast.walk(method) if _is_call(c, "_update")]
        if not updates:
            continue
        tables = {_literal(c.args[0]) for c in updates}
        assert len(tables) == 1, method.name
        [table] = tables
        # Every string key this method writes: dict literals and `values["x"] = ...`.
        keys: set[str] = set()
        for node in ast.walk(method):
            keys |= _dict_keys(node)
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                keys.add(_literal(node.slice))
        missing = keys - set(store_module.TABLES[table])
        assert not missing, f"{method.name} writes {table}.{sorted(missing)}"
        checked += 1
    assert checked >= 10
    assert set(store_module._UNCLAIMED) <= set(store_module.TABLES["outbox"])
