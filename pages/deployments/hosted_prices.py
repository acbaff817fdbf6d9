"""Per-token list prices of open-weights models served by hosted APIs: what a deployment's cost per
token is compared with (pages/deployments/cost_comparison.py). Like with like: the same open-weights
model (or the nearest size of it), never a closed model.

These are list prices as each provider's public pricing page showed them on the date recorded with
each row; they were written down by hand, not fetched (gpucloud reads nothing from the internet at
run time), and providers change them. To update: edit the rows below, with the page's address and
the day you read it.
"""

from __future__ import annotations

from dataclasses import dataclass

USD = 1_000_000  # micro-USD


@dataclass(frozen=True)
class HostedPrice:
    model: str  # the open-weights model as the provider names it
    provider: str
    input_per_million_micros: int
    output_per_million_micros: int
    source: str  # the pricing page the figures come from
    as_of: str  # when they were read there (month precision: that is what we know)
    compares_to: str  # a key of COMPARABLE below


LLAMA_8B, LLAMA_70B, MISTRAL_7B = "llama-8b", "llama-70b", "mistral-7b"

HOSTED_PRICES: tuple[HostedPrice, ...] = (
    HostedPrice("Llama 3.1 8B Instruct (llama-3.1-8b-instant)", "Groq", 50_000, 80_000,
                "https://groq.com/pricing/", "January 2025", LLAMA_8B),
    HostedPrice("Llama 3.1 8B Instruct Turbo", "Together AI", 180_000, 180_000,
                "https://www.together.ai/pricing", "January 2025", LLAMA_8B),
    HostedPrice("Any 4B to 16B model, e.g. Llama 3.1 8B Instruct", "Fireworks AI", 200_000, 200_000,
                "https://fireworks.ai/pricing", "January 2025", LLAMA_8B),
    HostedPrice("Llama 3.3 70B Instruct (llama-3.3-70b-versatile)", "Groq", 590_000, 790_000,
                "https://groq.com/pricing/", "January 2025", LLAMA_70B),
    HostedPrice("Llama 3.3 70B Instruct Turbo", "Together AI", 880_000, 880_000,
                "https://www.together.ai/pricing", "January 2025", LLAMA_70B),
    HostedPrice("Any model over 16B, e.g. Llama 3.3 70B Instruct", "Fireworks AI", 900_000, 900_000,
                "https://fireworks.ai/pricing", "January 2025", LLAMA_70B),
    HostedPrice("Mistral 7B Instruct v0.3", "Together AI", 200_000, 200_000,
                "https://www.together.ai/pricing", "January 2025", MISTRAL_7B),
    HostedPrice("Any 4B to 16B model, e.g. Mistral 7B Instruct", "Fireworks AI", 200_000, 200_000,
                "https://fireworks.ai/pricing", "January 2025", MISTRAL_7B),
)  # fmt: skip

# Which hosted rows a catalog model compares with, and what to say when they are not the same model.
# A catalog model missing here (embeddings, speech, images) has no per-token comparison.
COMPARABLE: dict[str, tuple[str, str]] = {
    "llama-3.1-8b-instruct": (LLAMA_8B, ""),
    "llama-3.3-70b-instruct": (LLAMA_70B, ""),
    "mistral-7b-instruct": (MISTRAL_7B, ""),
    "smollm2-135m-instruct": (
        LLAMA_8B,
        "No hosted API lists a model as small as SmolLM2 135M; the nearest are these 8B models, "
        "which are larger and answer better.",
    ),
}


def hosted_prices_for(model_slug: str | None) -> tuple[list[HostedPrice], str]:
    """The hosted list prices comparable to a catalog model, and a note when they are not the same
    model; ([], "") when nothing compares."""
    found = COMPARABLE.get(model_slug or "")
    if found is None:
        return [], ""
    group, note = found
    return [p for p in HOSTED_PRICES if p.compares_to == group], note
