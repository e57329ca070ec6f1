"""Lead profiles the fake model hands back, shared by the flows that need a hot lead."""

from __future__ import annotations

from typing import Any

# Everything the scoring rules reward: with this profile a lead is quente.
HOT_LEAD: dict[str, Any] = {
    "name": "Maria Souza",
    "company": "Frigorífico Boi Bom",
    "segment": "frigorífico",
    "product_interest": "FB300",
    "volume": "3.000 hambúrgueres por dia",
    "volume_per_day": 3000,
    "urgency": "imediata",
    "decision_role": "decisor",
    "city": "Londrina",
    "state": "PR",
}
