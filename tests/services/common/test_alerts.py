"""The one message formatter (services.common.alerts.Alert): the Slack payload its current callers (serving, DAGs)
send is unchanged, links and long details fit Slack's limits, and the Markdown form carries the same content."""

from __future__ import annotations

from services.common.alerts import MAX_FIELDS, Alert, Severity, truncate_lines


def test_a_plain_alert_keeps_its_payload() -> None:
    alert = Alert("model.reloaded", "champion is version 3", Severity.WARNING, {"model": "iris", "version": "3"})
    assert alert.slack_payload() == {
        "text": ":warning: *model.reloaded*: champion is version 3",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": ":warning: *model.reloaded*: champion is version 3"},
            },
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": "*model*\niris"}, {"type": "mrkdwn", "text": "*version*\n3"}],
            },
        ],
    }


def test_links_fields_and_details_fit_slack_limits() -> None:
    diff = "\n".join(f"  ~ line {i}: <old> => <new>" for i in range(500))
    alert = Alert(
        "drift.detected",
        "prod differs",
        fields={f"k{i}": "v" for i in range(MAX_FIELDS + 3)},
        links={"run": "https://github.com/acme/x/actions/runs/1"},
        details=diff,
    )
    blocks = alert.slack_payload()["blocks"]
    assert isinstance(blocks, list)
    assert len(blocks[1]["fields"]) == MAX_FIELDS
    assert blocks[2] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "<https://github.com/acme/x/actions/runs/1|run>"}],
    }
    text = blocks[3]["text"]["text"]
    assert len(text) <= 3000 and text.startswith("```\n  ~ line 0: &lt;old&gt; =&gt; &lt;new&gt;")
    assert text.endswith("more lines)\n```")


def test_truncate_lines_cuts_at_a_line_boundary_and_counts_what_it_left_out() -> None:
    text = "\n".join(["x" * 10] * 10)  # 109 characters
    assert truncate_lines(text, 200) == text
    cut = truncate_lines(text, 60)
    assert len(cut) <= 60 and cut.splitlines()[:-1] == ["x" * 10] * 3 and cut.endswith("(7 more lines)")
    assert truncate_lines("y" * 50, 10) == "yyyyyyy..."


def test_markdown_carries_the_same_content() -> None:
    alert = Alert(
        "deploy.failed",
        "prod: `pulumi up` FAILED",
        Severity.ERROR,
        fields={"Stack": "prod", "Resources": "a | b"},
        links={"workflow run": "https://example.test/run"},
        details="+ created\n- deleted",
    )
    assert alert.markdown() == "\n".join(
        [
            "### :rotating_light: **deploy.failed**: prod: `pulumi up` FAILED",
            "",
            "| | |",
            "| --- | --- |",
            "| Stack | prod |",
            "| Resources | a \\| b |",
            "",
            "[workflow run](https://example.test/run)",
            "",
            "```diff",
            "+ created\n- deleted",
            "```",
            "",
        ]
    )
