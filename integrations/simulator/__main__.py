"""``python -m integrations.simulator [--portal URL] [--port N] [--no-drive] [--outage erp:10:40] …``."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
import time

from integrations.simulator.receiver import KINDS, SimulatorState, serve


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m integrations.simulator", description=__doc__)
    parser.add_argument("--portal", default=os.environ.get("SIMULATOR_PORTAL", "http://127.0.0.1:8000"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIMULATOR_PORT", "8765")))
    parser.add_argument("--no-drive", action="store_true", help="only receive (no orders or events to the portal)")
    parser.add_argument(
        "--order-rate",
        type=float,
        default=float(os.environ.get("SIMULATOR_ORDER_RATE", "0.2")),
        help="orders per second sent to POST /api/v1/orders",
    )
    parser.add_argument(
        "--same-day-until",
        type=dt.time.fromisoformat,
        default=dt.time.fromisoformat(os.environ.get("SIMULATOR_SAME_DAY_UNTIL", "14:00")),
        metavar="HH:MM",
        help="UTC time until which the ERP asks for shipment today; later orders ask for tomorrow",
    )
    parser.add_argument("--short-rate", type=float, default=0.05, help="share of picks reported short")
    parser.add_argument("--work-seconds", type=float, default=5.0, help="how long picking and collection take")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of outbound calls answered 503")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="mean answer latency of outbound calls")
    parser.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="KIND:FROM:TO",
        help="fail every call to KIND from FROM to TO seconds after start (repeatable)",
    )
    parser.add_argument(
        "--wcs-units",
        default=os.environ.get("SIMULATOR_WCS_UNITS", ""),
        help="comma-separated equipment codes the WCS reports heartbeats for (others are learned from instructions)",
    )
    parser.add_argument("--heartbeat-seconds", type=float, default=5.0, help="WCS heartbeat interval per unit")
    parser.add_argument(
        "--receipt-seconds",
        type=float,
        default=float(os.environ.get("SIMULATOR_RECEIPT_SECONDS", "120")),
        help="how often the ERP announces a supplier delivery (0: never)",
    )
    parser.add_argument(
        "--payment-seconds", type=float, default=300.0, help="how long after invoicing the ERP books the payment"
    )
    parser.add_argument("--seed", type=int, default=None)
    for kind in KINDS:
        parser.add_argument(f"--{kind}-token", default=os.environ.get(f"SIMULATOR_{kind.upper()}_TOKEN", ""))
    return parser.parse_args(argv)


def secrets_from_env() -> dict[str, str]:
    """Shared signing secrets per partner kind (the demo partners use the same defaults)."""
    return {kind: os.environ.get(f"SIMULATOR_{kind.upper()}_SECRET", f"simulator-{kind}-secret") for kind in KINDS}


def schedule_outages(state: SimulatorState, outages: list[str]) -> None:
    started = time.time()
    for spec in outages:
        kind, begin, end = spec.split(":")

        def start(kind=kind, length=float(end) - float(begin)):
            with state.lock:
                state.faults[kind].down_until = time.time() + length

        delay = max(0.0, started + float(begin) - time.time())
        threading.Timer(delay, start).start()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s simulator %(levelname)s %(message)s")
    args = parse_args(argv)
    state = SimulatorState(secrets=secrets_from_env(), seed=args.seed)
    for kind in KINDS:
        state.faults[kind].update({"error_rate": args.error_rate, "latency_ms": args.latency_ms})
    schedule_outages(state, args.outage)
    server = serve(state, host=args.host, port=args.port)
    logging.info("partner simulator on http://%s:%s (erp, wms, tms, wcs)", args.host, server.server_address[1])
    if not args.no_drive:
        state.starting = True
        threading.Thread(target=start_driver, args=(args, state), name="driver", daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def wcs_units(args: argparse.Namespace) -> tuple[str, ...]:
    """The units named on the command line, else every active unit the portal knows."""
    named = tuple(code for code in args.wcs_units.split(",") if code)
    if named:
        return named
    from integrations.simulator.driver import machine_units

    try:
        return tuple(machine_units())
    except Exception as error:
        logging.warning("no equipment list (%s); heartbeats only for units that get work", error)
        return ()


def start_driver(args: argparse.Namespace, state: SimulatorState) -> None:
    """Run the driver; until it listens, the receiver answers messages with 503 (`state.starting`)."""
    try:
        _drive(args, state)
    finally:
        state.starting = False  # messages are taken from now on (with no driver, as a plain receiver)


def _drive(args: argparse.Namespace, state: SimulatorState) -> None:
    """Wait for the portal, get tokens and master data, then send orders and react to messages."""
    import httpx

    from integrations.simulator.driver import Driver, customer_balances, issue_token, master_data, pick_faces

    for _ in range(120):
        try:
            if httpx.get(f"{args.portal.rstrip('/')}/healthz", timeout=2).status_code < 600:
                break
        except httpx.HTTPError:
            time.sleep(1)
    tokens = {kind: getattr(args, f"{kind}_token") or issue_token(kind) or "" for kind in KINDS}
    missing = [kind for kind, token in tokens.items() if not token]
    if missing:
        logging.warning("no partner token for %s; those partners only receive", ", ".join(missing))
    try:
        customers, skus = master_data()
        balances, faces = customer_balances(), pick_faces()
    except Exception as error:
        logging.warning("no master data (%s); not sending orders", error)
        customers, skus, balances, faces = {}, [], {}, {}
    driver = Driver(
        portal=args.portal,
        tokens=tokens,
        secrets=state.secrets,
        order_rate=args.order_rate,
        same_day_until=args.same_day_until,
        short_rate=args.short_rate,
        work_seconds=args.work_seconds,
        customers=customers,
        skus=skus,
        seed=args.seed,
        wcs_units=wcs_units(args),
        heartbeat_seconds=args.heartbeat_seconds,
        balances=balances,
        payment_seconds=args.payment_seconds,
        faces=faces,
        receipt_seconds=args.receipt_seconds,
    )
    state.controls["wcs"] = driver.floor.control
    state.reports["wcs"] = driver.floor.stats
    state.listeners.append(driver.on_message)
    driver.start()
    logging.info("driving the portal at %s: %.2f orders/s", args.portal, args.order_rate)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
