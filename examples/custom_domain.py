"""A new domain in under 40 lines: doubling numbers, with worked solutions for the scripted teacher."""

import asyncio
import sys

from pedagogy.config import load_config
from pedagogy.domains import Problem, Verdict, extract_final_answer, register_domain
from pedagogy.runner import run_loop


class Doubling:
    name = "doubling"

    def skills(self):
        return ["double"]

    def levels(self, skill):
        return [0, 1, 2]  # 1-, 2- and 3-digit numbers

    def generate(self, rng, n, skill, level):
        xs = [rng.randrange(10**level, 10 ** (level + 1)) for _ in range(n)]
        return [Problem(self.name, skill, level, f"2*{x}=", str(2 * x)) for x in xs]

    def parse_answer(self, response):
        return extract_final_answer(response)

    def verify(self, problem, response):
        answer = self.parse_answer(response)
        return Verdict(answer == problem.answer, float(answer == problem.answer), answer)

    def solve(self, problem):
        x = problem.prompt[2:-1]
        return f"S:{x}+{x}={problem.answer}\nA:{problem.answer}"


register_domain("doubling", lambda **options: Doubling(), replace=True)

if __name__ == "__main__":
    quick = {
        "rounds": 2,
        "episodes": {"per_round": 32},
        "training": {"max_seconds": 3},
        "evaluation": {"heldout_per_arm": 16},
    }
    overrides = {
        "domain": {"name": "doubling", "options": {}},
        "workdir": "pedagogy-runs/custom-domain",
    }
    config = load_config(None).with_overrides(
        {**overrides, **(quick if "--quick" in sys.argv else {})}
    )
    result = asyncio.run(run_loop(config))
    print(
        f"run {result.run_id}: {result.status}; see `pedagogy show {result.run_id} --db {result.db_url}`"
    )
