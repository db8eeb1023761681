import sys
from pathlib import Path

# The project runs pytest with --import-mode=importlib, which does not put test folders on sys.path; the
# fixture-tree builders next to the tests are imported by module name.
sys.path.insert(0, str(Path(__file__).parent))
