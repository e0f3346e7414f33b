"""docs/observability.md lists exactly the alert rules and the dashboards (with their panels) the code defines."""

from __future__ import annotations

import re

from harness.run import ROOT
from observability import dashboards, rules

DOC = ROOT / "docs" / "observability.md"
# placeholders as the document shows them; one scheduled model, so the staleness alert is listed
RULES = rules.RuleSettings("mlops-<stack>", "mlops-<stack>-serving", "mlops-<stack>-airflow", retrain_days={"t": 8})
CONTEXT = dashboards.DashboardContext("<stack>", "mlops-<stack>", "mlops-<stack>-serving", "mlops-<stack>-airflow")


def _section(name: str) -> str:
    match = re.search(f"<!-- {name}:start -->\n(.*?)\n<!-- {name}:end -->", DOC.read_text(), flags=re.DOTALL)
    assert match, f"docs/observability.md has no {name} section"
    return match.group(1)


def test_the_alert_table_is_the_rules() -> None:
    assert _section("alerts") == rules.markdown_table(rules.alert_rules(RULES))


def test_the_dashboard_list_is_the_dashboards() -> None:
    assert _section("dashboards") == dashboards.markdown_list(CONTEXT)
