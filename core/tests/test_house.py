"""
The house (../shared/STYLE.md): dependencies point one way, and production code
stays apart from the development kit.

Each production module's imports are read with `ast` (no module is imported), so
an import inside a function or under `if TYPE_CHECKING` counts too.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What each folder may import, from the table in STYLE.md ("The house").
MAY_IMPORT = {
    "core": set(),
    "payments": {"core"},
    "refunds": {"core", "payments"},
    "webhooks": {"core", "payments", "refunds"},
    "notifications": {"core", "payments", "refunds"},
    "ledger": {"core", "payments", "refunds"},
    "backoffice": {"core", "payments", "refunds", "webhooks", "notifications", "ledger"},
    "storefront": {"core", "payments", "refunds", "webhooks", "notifications", "ledger"},
    "paymentsite": {"core", "payments", "refunds", "webhooks", "notifications", "ledger", "backoffice", "storefront"},
}
PROJECT_PACKAGES = set(MAY_IMPORT) | {"devkit", "benchmarks", "conftest"}
# Never imported by production code, whatever the layer.
FORBIDDEN = {"devkit", "requests", "conftest", "benchmarks", "localstripe", "aiohttp"}
# The one module that talks to Stripe.
STRIPE_MODULE = "core/stripe_gateway.py"


def production_modules():
    """(folder, path) of every production module: not tests, migrations, devkit or benchmarks."""
    for folder in MAY_IMPORT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts:
                continue
            yield folder, path


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every absolute import in a file."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return names


def house_violations(folder: str, path: Path) -> list[str]:
    """What is wrong with one module's imports, one line each ('' list when nothing is)."""
    relative = path.relative_to(ROOT).as_posix()
    problems = []
    for line, name in imported_modules(path):
        parts = name.split(".")
        top = parts[0]
        where = f"{relative}:{line} imports {name}"
        if top in FORBIDDEN or "tests" in parts:
            problems.append(f"{where}: production code never imports it")
        elif top == "stripe" and relative != STRIPE_MODULE:
            problems.append(f"{where}: only {STRIPE_MODULE} talks to Stripe")
        elif top in PROJECT_PACKAGES and top != folder and top not in MAY_IMPORT[folder]:
            problems.append(
                f"{where}: {folder}/ may import only {sorted(MAY_IMPORT[folder]) or 'Django and libraries'}"
            )
    return problems


def test_every_production_module_imports_only_layers_below_it():
    """No module imports a layer above its own, devkit, a tests package, requests, or stripe."""
    modules = list(production_modules())
    assert len(modules) > 30, "the walk found too few modules to mean anything"
    problems = [problem for folder, path in modules for problem in house_violations(folder, path)]
    assert problems == []


@pytest.mark.parametrize(
    ("folder", "source", "complaint"),
    [
        ("payments", "from refunds.models import Refund\n", "payments/ may import only ['core']"),
        ("core", "from payments.models import Payment\n", "core/ may import only Django and libraries"),
        ("refunds", "def f():\n    from webhooks import handlers\n", "refunds/ may import only"),
        ("webhooks", "import requests\n", "production code never imports it"),
        ("backoffice", "from devkit.fakestripe import FakeStripe\n", "production code never imports it"),
        ("storefront", "from payments.tests.factories import PaymentFactory\n", "production code never imports it"),
        ("payments", "import stripe\n", "only core/stripe_gateway.py talks to Stripe"),
    ],
)
def test_an_upward_or_forbidden_import_is_caught(tmp_path, monkeypatch, folder, source, complaint):
    """The check is able to fail: each kind of bad import in a module of `folder` is named."""
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    module = tmp_path / folder / "bad.py"
    module.parent.mkdir()
    module.write_text(source)
    problems = house_violations(folder, module)
    assert len(problems) == 1
    assert complaint in problems[0]


def test_the_stripe_module_itself_may_import_stripe():
    assert house_violations("core", ROOT / STRIPE_MODULE) == []
