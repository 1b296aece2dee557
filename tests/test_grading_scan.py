"""The static scan of answer cells: what it flags, and that honest answers (every reference solution) pass."""

import glob

import nbformat
import pytest

from dpdl.grading.scan import scan_answers, scan_source
from dpdl.notebooks.cells import answer_cells, cell_source
from tests.fixtures.hostile import reference as hostile

EXERCISES = sorted(glob.glob("exercises/lab*/lab*_exercise.ipynb"))

# source -> a piece of the one flag it must raise
FLAGGED = {
    "import torch\ntorch.allclose = lambda *a, **k: True": "`torch.allclose = ...` assigns to an attribute of the module torch",
    "import numpy as np\nnp.testing.assert_allclose = print": "`numpy.testing.assert_allclose = ...`",
    "del math.isclose": "`del math.isclose` deletes an attribute",
    "from torch import Tensor\nTensor.__eq__ = lambda s, o: True": "`torch.Tensor.__eq__ = ...`",
    "setattr(torch, 'allclose', f)": "changes a module at run time",
    "setattr(Tensor, 'add', f)": "changes a class at run time",
    "setattr(type(x), 'add', f)": "changes a class at run time",
    "import builtins": "`import builtins` uses the builtins module",
    "__builtins__.abs = f": "`__builtins__` reaches the built-in functions",
    "import sys\nsys.settrace(f)": "`sys.settrace` installs a trace function",
    "from sys import setprofile\nsetprofile(f)": "`from sys import setprofile` installs a profile function",
    "import gc\nfor o in gc.get_objects(): pass": "`import gc` reaches objects through the garbage collector",
    "import ctypes": "`import ctypes` uses ctypes",
    "import sys\nframe = sys._getframe(1)": "`sys._getframe` inspects stack frames",
    "import inspect\ninspect.currentframe()": "`inspect.currentframe` inspects stack frames",
    "def f(e):\n    return e.__traceback__.tb_frame.f_back.f_locals": "inspects stack frames",
    "import importlib\nimportlib.reload(np)": "`import importlib` imports or reloads modules by hand",
    "get_ipython().input_transformers_cleanup.append(f)": "`get_ipython().input_transformers_cleanup` touches IPython",
    "ip = get_ipython()\nip.input_transformers_post.append(f)": "`ip.input_transformers_post` touches IPython",
    "get_ipython().ast_transformers.append(t)": "`get_ipython().ast_transformers` touches IPython",
    "get_ipython().set_custom_exc((AssertionError,), h)": "`get_ipython().set_custom_exc` touches IPython",
    "get_ipython().showtraceback = lambda *a: None": "`get_ipython().showtraceback` touches IPython",
    "get_ipython().events.register('pre_run_cell', f)": "registers an IPython event callback",
    "exec('x = 1')": "`exec(...)` runs code from a string",
    "eval('1 + 1')": "`eval(...)` runs code from a string",
    "code = compile('1', 'f', 'eval')": "`compile(...)` compiles code from a string",
    "np = __import__('numpy')": "`__import__(...)` imports a module by name",
    "globals()['np'] = None": "`globals(...)` reaches the notebook's global namespace",
    "import subprocess\nsubprocess.run(['ls'])": "`import subprocess` starts processes",
    "import os\nos.system('ls')": "`os.system` runs a shell command",
    "import os\nos.popen('ls')": "`os.popen` runs a shell command",
    "import os\nos.kill(1, 9)": "`os.kill` sends a signal to a process",
    "import signal": "`import signal` handles or sends signals",
    "!ls /": "runs a shell command",
    "%run /tmp/solution.py": "`%run` runs a magic that runs other code",
    "text = open('/etc/passwd').read()": "`open('/etc/passwd')` uses a path outside the working directory",
    "from pathlib import Path\nPath('../reference.ipynb').read_text()": "`Path('../reference.ipynb')` uses a path outside",
    "np.load('~/solutions.npy')": "`load('~/solutions.npy')` uses a path outside",
    "from pathlib import Path\nPath.home()": "uses the home folder",
    "class Always:\n    def __eq__(self, other):\n        return True": "`def __eq__` defines how objects compare",
    "from torch.overrides import TorchFunctionMode": "uses torch function overrides",
    "def all(xs):\n    return True": "`def all` hides the built-in `all`",
    "isinstance = lambda o, c: True": "`isinstance = lambda ...` hides the built-in `isinstance`",
    "import types\nnp = types.SimpleNamespace()": "`np = ...` rebinds `np`",
    "getattr(sys, 'settrace')(f)": "reaches a forbidden attribute by name",
    "fn.__code__ = other.__code__": "`fn.__code__` reaches into a function's internals",
}

HONEST = [
    "model.fc = nn.Linear(512, 2)",
    "setattr(self, name, value)",
    "for name, p in model.named_parameters():\n    p.requires_grad = False",
    "%timeit f(x)",
    "%matplotlib inline",
    "data = open('data.csv').read()",
    "from pathlib import Path\nout = Path('figures') / 'loss.png'",
    "parts = 'a/b/c'.split('/')\npath = '/'.join(parts)",
    "torch.save(model.state_dict(), 'model.pt')",
    "from IPython.display import display, Image\ndisplay(Image('x.png'))",
    "import numpy as np\nx = np.sqrt(np.sum(np.square(v)))",
    "class Net(nn.Module):\n    def forward(self, x):\n        return self.fc(x)\n\n    def all(self):\n        return 1",
    "max_value = max(values)\nsum_ = sum(values)",
    "x = torch.zeros(3)\nx.data = torch.ones(3)",
    "F = X.shape[1]",
]


@pytest.mark.parametrize("source", list(FLAGGED))
def test_each_construct_is_flagged_with_its_line_and_name(source):
    flags = scan_answers({"ex1-answer": source})
    expected = FLAGGED[source]
    assert any(expected in flag for flag in flags), flags
    assert all(flag.startswith("answer `ex1-answer` line ") for flag in flags), flags


@pytest.mark.parametrize("source", HONEST)
def test_honest_code_is_not_flagged(source):
    assert scan_source(source) == []


@pytest.mark.parametrize("path", EXERCISES)
def test_no_reference_solution_of_any_exercise_is_flagged(path):
    nb = nbformat.read(path, as_version=4)
    answers = {id_: cell_source(cell) for id_, cell in answer_cells(nb).items()}
    assert answers, f"{path} has no answer cells"
    assert scan_answers(answers) == []


def test_a_cell_that_does_not_parse_is_itself_a_flag():
    flags = scan_answers({"ex2": "def f(:\n    pass"})
    assert len(flags) == 1 and flags[0].startswith("answer `ex2` line 1: does not parse as Python (SyntaxError")


def test_flags_name_the_line_and_come_once_each_in_line_order():
    source = "x = 1\nimport gc\n\nexec('y = 2')\nexec('y = 2')"
    assert scan_source(source) == [
        "line 2: `import gc` reaches objects through the garbage collector",
        "line 4: `exec(...)` runs code from a string",
        "line 5: `exec(...)` runs code from a string",
    ]


@pytest.mark.parametrize("name", sorted(hostile.attacks()))
def test_every_hostile_submission_is_flagged_by_the_scan(name):
    kind, source = hostile.attacks()[name]
    assert scan_answers({"answer": source}), f"the scan misses the {name} attack"


def test_pathological_sources_are_flagged_without_crashing_the_batch():
    for source in ["x = " + "(" * 5000 + ")" * 5000, "x = " + "-" * 100_000 + "1", "\x00"]:
        flags = scan_source(source)
        assert len(flags) == 1 and "could not be scanned" in flags[0], flags
