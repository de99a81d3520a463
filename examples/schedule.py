"""Schedules: start a workflow template on a cron expression (in a time zone) or at an interval, each tick
exactly once.

    python examples/schedule.py --target 127.0.0.1:50051 [--ticks 2] [--interval 1]

It creates a weekday cron schedule (paused, to show one) and an interval schedule, waits for the interval
schedule's first ticks, triggers one execution by hand, lists the schedules and deletes both.
"""

from __future__ import annotations

import argparse
import time

import voltorch
from voltorch import AgentTask, ParameterSpec, Step, WorkflowTemplate

TEMPLATE = WorkflowTemplate(
    name="status-digest",
    parameters=[ParameterSpec("team", required=True)],
    steps=[
        Step("digest", AgentTask("Write the status digest of team {{team}}", capabilities=["documentation"]))
    ],
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--token", default="")
    parser.add_argument("--ticks", type=int, default=2, help="interval ticks to wait for")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    args = parser.parse_args()

    with voltorch.Client(args.target, token=args.token or None, timeout=30) as client:
        client.workflows.register_template(TEMPLATE)
        weekdays = client.schedules.create(
            "status-digest",
            {"team": "platform"},
            cron="30 7 * * 1-5",
            time_zone="Europe/Paris",
            catchup="latest",
            paused=True,
            description="weekday mornings in Paris",
        )
        print(f"{weekdays.id}: cron {weekdays.cron} ({weekdays.time_zone}), next {weekdays.next_tick_time}")
        every = client.schedules.create(
            "status-digest",
            {"team": "search"},
            interval=args.interval,
            start_time=time.time() + args.interval,
            overlap="buffer_one",
        )
        print(f"{every.id}: every {every.interval:g}s, first tick {every.next_tick_time}")

        deadline = time.monotonic() + 30 + args.ticks * args.interval
        while client.schedules.get(every.id).ticks_started < args.ticks:  # bounded wait for the ticks
            if time.monotonic() > deadline:
                print("the ticks did not come in time")
                return 1
            time.sleep(min(args.interval / 4, 0.25))
        client.schedules.pause(every.id)
        runs = [e for e in client.workflows.list() if e.labels.get("schedule") == every.id]
        for e in sorted(runs, key=lambda e: e.request_id):
            print(f"tick execution {e.id}: {e.request_id}")

        manual = client.schedules.trigger(every.id).execution
        print(f"triggered by hand: {manual.id}")
        print("schedules:", ", ".join(f"{s.id} ({s.ticks_started} started)" for s in client.schedules.list()))
        for s in (weekdays, every):
            client.schedules.delete(s.id)
        print(f"deleted; {len(runs)} tick executions started")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
