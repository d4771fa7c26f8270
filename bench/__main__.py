"""``python -m bench ...``"""

import sys
from pathlib import Path

# `python -m` puts the working directory first on sys.path. Outside a checkout, a folder there named like one of our
# packages, such as the ./reports/out/ that `bench run` itself writes, would be imported as a namespace package and
# shadow the installed one (an editable install resolves through a finder that comes after the path). The working
# directory holds no code of ours then, so drop it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path.cwd().resolve() \
        and not (Path.cwd() / "bench" / "__init__.py").is_file():
    sys.path.pop(0)

from bench.cli import main  # noqa: E402

raise SystemExit(main())
