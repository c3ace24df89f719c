"""How wide a page in the browser tests is: whether anything makes it scroll sideways."""

from __future__ import annotations

from playwright.sync_api import Page


def overflow(page: Page) -> tuple[int, int, list[str]]:
    """The page's scroll width, the viewport's width, and the first elements reaching
    past its right edge (tag and id)."""
    wide = page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const over = [...document.querySelectorAll('body *')]
                .filter((e) => e.getBoundingClientRect().right > width + 0.5)
                .map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : ''));
            return [document.documentElement.scrollWidth, width, over.slice(0, 5)];
        }"""
    )
    return int(wide[0]), int(wide[1]), list(wide[2])
