"""Cost of the template limits (mailer.sandbox) per message: render_mime of a newsletter, this tree against a git ref.

    .venv/bin/python bench/render_limits.py [--ref HEAD~1] [--messages 3000] [--rounds 5]

The ref's mailer/ is exported to a temporary directory; each round runs both trees in fresh processes, one after the
other (interleaved, so a shared machine's drift hits both alike), and measures process CPU time per message after a
warm-up. Prints the median of each and their difference; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
from mailer.compose import CampaignSource, compile_campaign
items = "".join(f'<mj-text><a href="https://shop.test/p/{i}">Product {i}</a> {{{{ contact.first_name }}}}, '
                f"{{{{ '%0.2f'|format(9.5) }}}}</mj-text>\n" for i in range(20))
mjml = ("<mjml><mj-body><mj-section><mj-column>\n"
        "<mj-text>Hello {{ contact.first_name }} from {{ contact.city|default('your town', true) }}</mj-text>\n"
        + items + "<mj-text>{% for i in contact.interests %}{{ i|title }} {% endfor %}</mj-text>\n"
        "</mj-column></mj-section></mj-body></mjml>")
compiled = compile_campaign(CampaignSource(mjml=mjml, subject="Hi {{ contact.first_name }}, news"))
ctx = {"contact": {"first_name": "Zoë", "city": "Berlin", "interests": ["roses", "herbs", "tools"]},
       "sender": {"postal_address": "Berlin"}, "unsubscribe_url": "https://x/u/a", "preferences_url": "https://x/p/a"}
click = lambda i: f"https://mail.test/c/{i}xyz"
n = int(sys.argv[2])
for _ in range(200):
    compiled.render_mime(ctx, click, "https://mail.test/o/x")
start = time.process_time()
for _ in range(n):
    compiled.render_mime(ctx, click, "https://mail.test/o/x")
print(json.dumps((time.process_time() - start) / n * 1e6))
'''


def run(tree: Path, messages: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(messages)], check=True, capture_output=True,
                         text=True, cwd=tree)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD~1")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", args.ref, "mailer"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        base, this = [], []
        for _ in range(args.rounds):
            base.append(run(Path(tmp), args.messages))
            this.append(run(ROOT, args.messages))
    result = {"ref": args.ref, "ref_us_per_message": round(statistics.median(base), 1),
              "this_us_per_message": round(statistics.median(this), 1),
              "rounds": args.rounds, "messages": args.messages}
    result["difference_us"] = round(result["this_us_per_message"] - result["ref_us_per_message"], 1)
    print(f"render_mime per message: {args.ref} {result['ref_us_per_message']} µs, "
          f"this tree {result['this_us_per_message']} µs ({result['difference_us']:+} µs)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
