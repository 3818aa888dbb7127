"""The fuzz tier's setup: Hypothesis keeps nothing in the repository. No example database (see
strategies.bounded: the regression corpus keeps what failed), and its home directory, where it
caches the constants it finds in the code under test, is a temporary directory set before any
test module is imported (Hypothesis writes that cache as soon as it collects), removed at exit."""

from __future__ import annotations

import atexit
import shutil
import tempfile

from hypothesis import configuration

_HOME = tempfile.mkdtemp(prefix="reconciler-hypothesis-")
configuration.set_hypothesis_home_dir(_HOME)
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
