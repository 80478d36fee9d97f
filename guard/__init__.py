"""budget-guard: keeps an organization's Anthropic API spend inside its monthly budgets."""

__version__ = "0.1.0"
