"""`python -m libs.dicomweb`: look studies up on a configured PACS (QIDO-RS) and pull one (WADO-RS).

    python -m libs.dicomweb servers
    python -m libs.dicomweb studies [--pacs NAME] [--date 20240101-20240131] [--modality CR] [--accession A]
    python -m libs.dicomweb pull STUDY_UID

`studies` prints StudyInstanceUID, date, modalities and instance count: never names or patient IDs.
`pull` stores the study locally (as the ingestion step would) and prints what it stored; then ask
for a report with POST /api/v1/studies/{STUDY_UID}/report. The PACS list comes from the usual
settings (CXR_PACS_CONFIG, CXR_PACS_URL, CXR_PACS; docs/pacs.md).
"""

from __future__ import annotations

import argparse
import sys

from libs.core.config import get_settings
from libs.core.errors import InputRejected
from libs.dicomweb.client import PacsUnavailable, describe, make_client


def _value(item: dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or []
    return ",".join(str(v) for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m libs.dicomweb", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("servers", help="list the configured PACS servers")
    studies = sub.add_parser("studies", help="QIDO-RS study search")
    studies.add_argument("--pacs", help="server name (default: the first that pulls)")
    studies.add_argument("--date", help="StudyDate or range, e.g. 20240101-20240131")
    studies.add_argument("--modality", help="ModalitiesInStudy, e.g. CR or DX")
    studies.add_argument("--accession", help="AccessionNumber")
    studies.add_argument("--limit", type=int, default=50)
    pull = sub.add_parser("pull", help="fetch a study and store it locally")
    pull.add_argument("study_uid")
    args = parser.parse_args(argv)

    settings = get_settings()
    if args.command == "servers":
        for p in settings.pacs:
            print(f"{p.name}\t{p.url}\tauth={p.auth}\tpull={p.pull}\tstore_results={p.store_results}")
        return 0
    if not settings.pull_servers:
        print("no PACS configured to pull from (CXR_PACS_CONFIG or CXR_PACS_URL; docs/pacs.md)", file=sys.stderr)
        return 2
    if args.command == "studies":
        pacs = next((p for p in settings.pacs if p.name == args.pacs), None) if args.pacs else settings.pull_servers[0]
        if pacs is None:
            print(f"no PACS named {args.pacs!r}", file=sys.stderr)
            return 2
        filters = {k: v for k, v in (("StudyDate", args.date), ("ModalitiesInStudy", args.modality),
                                     ("AccessionNumber", args.accession)) if v}
        try:
            found = make_client(pacs).search_for_studies(search_filters=filters, limit=args.limit,
                                                         fields=["00201208", "00080061"])
        except Exception as exc:  # noqa: BLE001
            print(describe(pacs, exc, "searching studies (QIDO-RS)").reason, file=sys.stderr)
            return 1
        for item in found:
            print("\t".join((_value(item, "0020000D"), _value(item, "00080020"), _value(item, "00080061"),
                             _value(item, "00201208"))))
        return 0

    from libs.dicomweb.pull import pull_study
    from libs.pipeline.context import PipelineContext

    ctx = PipelineContext.from_settings(settings)
    try:
        result = pull_study(ctx.engine, settings, args.study_uid)
    except (PacsUnavailable, InputRejected) as exc:
        print(exc.reason, file=sys.stderr)
        return 1 if isinstance(exc, PacsUnavailable) else 2
    print(f"study {args.study_uid} from PACS {result.pacs}: {result.fetched} fetched, {result.newly_stored} new, "
          f"{result.already_stored} already stored, {len(result.skipped)} skipped")
    for reason in result.skipped:
        print(f"  skipped: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
