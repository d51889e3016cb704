"""FCN-16s on the offline digit scenes: digits_fcn8s.py's network and schedule with one skip (stride 16).

    jaxvision train --config=digits_fcn16s
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location("digits_fcn8s", os.path.join(os.path.dirname(__file__), "digits_fcn8s.py"))
_fcn8s = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fcn8s)


def get_config(arg: str | None = None):
    return _fcn8s.fcn_config("fcn16s_small", "digits_fcn16s", arg)
