"""An agent's side of a proof-of-GPU challenge, for tests that drive the portal's API: the
agent package's own NumPy solver, the one `omnitensor-agent run --simulate` answers with."""

from omnitensor_agent.proof import Solution, make_backend, solve

COMMIT = "/api/v1/agent/challenges/{id}/commit"
REVEAL = "/api/v1/agent/challenges/{id}/reveal"


def honest(challenge: dict) -> Solution:
    """The solution of a challenge as delivered (the dict the telemetry answer carries)."""
    seed = bytes.fromhex(challenge["seed"])
    return solve(make_backend("numpy"), seed, challenge["n"], challenge["rounds"])


def reveal_rows(solution: Solution, wanted: list[dict]) -> list[dict]:
    """The reveal body's rows for the rows a commit answer named."""
    return [solution.reveal(item["round"], item["row"]) for item in wanted]
