"""axe-core, the accessibility checker, run inside a page the browser tests have open.

axe-core comes from the npm registry (``make install`` puts it under ``.venv/axe``) and is
injected into the page as a script; its findings come back as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / ".venv" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SEVERE = ("serious", "critical")


def available() -> bool:
    return AXE.is_file()


def version() -> str:
    package = AXE.parent / "package.json"
    data: dict[str, Any] = json.loads(package.read_text(encoding="utf-8"))
    return str(data["version"])


def check(page: Page) -> dict[str, Any]:
    """axe's findings on ``page`` as it is now: WCAG 2.x A and AA, and best practice."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        # Evaluated through the browser's debugging protocol: the page's own policy lets
        # in scripts from the hub only, and stays on for everything the page does.
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result: dict[str, Any] = page.evaluate(
        """async () => {
            const r = await axe.run(document, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',
                                                'best-practice']},
                resultTypes: ['violations'],
            });
            return {
                passes: r.passes.length,
                violations: r.violations.map((v) => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5),
                })),
            };
        }"""
    )
    return result


def severe(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in result["violations"] if v["impact"] in SEVERE]
