"""Packaging of the Slicer extension: CMake lists, metadata, catalog entry, licence, icon.

An extension that works from a source checkout can still break once installed:
Slicer copies into the build and install trees only the files the CMake lists
name. ``packaging_problems`` reads the repository's CMake lists the way Slicer's
macros map them (``slicerMacroBuildScriptedModule`` in Slicer's
``CMake/SlicerMacroBuildScriptedModule.cmake`` and ``ctkMacroCompilePythonScript``
in CTK's ``CMake/ctkMacroCompilePythonScript.cmake``) and checks that every file
used at run time lands at the path the code expects, in both trees.

How the two macros place a listed file (read from their source):

* ``slicerMacroBuildScriptedModule``: paths are relative to the folder of the
  calling CMakeLists.txt; each file is copied to the same relative path under
  ``<build>/<Slicer_QTSCRIPTEDMODULES_LIB_DIR>`` (plus the folder's own name
  with ``WITH_SUBDIR``), and the install rule copies that whole folder to
  ``<Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR>``. A ``../`` path is copied
  outside the folder and never installed.
* ``ctkMacroCompilePythonScript``: the same, relative to ``SOURCE_DIR`` (default:
  the calling folder) and copied under ``DESTINATION_DIR``; ``INSTALL_DIR``
  receives the folder's content with ``NO_INSTALL_SUBDIR``, else the folder.
* A script name without ``py`` in its extension gets ``.py`` appended.

The CMake reader understands what these lists use: commands with quoted,
unquoted and bracket arguments, comments, ``set``, ``${VAR}`` expansion (nested
too) with list splitting of unquoted arguments, ``project`` and
``add_subdirectory``. It ignores control flow: the bodies of ``if``/``foreach``
blocks are read as if they always ran, so keep file lists out of ``else()``
branches.
"""

import json
import posixpath
import re
import struct
import zlib
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]

#: Extension name: the project() name, the catalog entry file's name, the module's name.
EXTENSION_NAME = "AIAIF"

#: Stand-ins for the folders the Slicer SDK defines (the values do not matter,
#: only that build and install trees are told apart).
BUILD_SCRIPTED_DIR = "<build>/lib/Slicer/qt-scripted-modules"
INSTALL_SCRIPTED_DIR = "<install>/lib/Slicer/qt-scripted-modules"
SLICER_VARIABLES = {
    "CMAKE_BINARY_DIR": "<build>",
    "Slicer_QTSCRIPTEDMODULES_LIB_DIR": "lib/Slicer/qt-scripted-modules",
    "Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR": INSTALL_SCRIPTED_DIR,
}

#: The catalog entry schema of Slicer's ExtensionsIndex, version 1.0.2
#: (Slicer/Slicer ``Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json``; the
#: ExtensionsIndex validates entries against its own identical copy in
#: ``schemas/``): required keys, ``additionalProperties: false``, and each
#: property's JSON type.
CATALOG_SCHEMA_URL = ("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                      "slicer-extension-catalog-entry-schema-v1.0.2.json#")
CATALOG_REQUIRED_KEYS = ("$schema", "category", "scm_url")
CATALOG_PROPERTY_TYPES = {
    "$schema": str,
    "category": str,
    "scm_url": str,
    "scm_revision": str,
    "scm_type": str,           # enum: "git", "local"
    "build_dependencies": list,  # of str
    "dicom_support_rule": str,
    "build_subdirectory": str,
    "enabled": bool,
    "tier": int,               # 1 to 5
}

#: Project choice: keep screenshots light in the repository (the ExtensionsIndex
#: rejects repositories over 100 MB; a screenshot needs far less than this).
MAX_SCREENSHOT_BYTES = 300_000

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------
# A small CMake reader
# ---------------------------------------------------------------------------

class CMakeArgument:
    """One argument of a command invocation, before variable expansion."""

    def __init__(self, text, quoted):
        self.text = text
        self.quoted = quoted  # quoted and bracket arguments are never split on ';'

    def __repr__(self):
        return "CMakeArgument({!r}, quoted={})".format(self.text, self.quoted)


_QUOTED_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", ";": "\\;"}


def _skip_bracket(text, position):
    """If a bracket opening ``[[`` or ``[=[``... starts at position, return (content, end), else None."""
    match = re.match(r"\[(=*)\[", text[position:])
    if not match:
        return None
    closing = "]" + match.group(1) + "]"
    start = position + match.end()
    end = text.find(closing, start)
    if end < 0:
        raise ValueError("unterminated bracket at character {}".format(position))
    content = text[start:end]
    if content.startswith("\n"):
        content = content[1:]
    return content, end + len(closing)


def cmake_commands(text):
    """Command invocations of a CMake list file, in order.

    Returns
    -------
    list of (str, list of CMakeArgument)
        Lower-cased command name and its arguments.
    """
    commands = []
    position, length = 0, len(text)
    while position < length:
        char = text[position]
        if char.isspace():
            position += 1
        elif char == "#":
            position = _after_comment(text, position)
        else:
            match = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(").match(text, position)
            if not match:
                raise ValueError("expected a command at character {}: {!r}".format(position, text[position:position + 40]))
            name = match.group(1).lower()
            arguments, position = _read_arguments(text, match.end())
            commands.append((name, arguments))
    return commands


def _after_comment(text, position):
    """Position just after the comment starting at ``text[position] == "#"`` (bracket or line comment)."""
    bracket = _skip_bracket(text, position + 1)
    if bracket is not None:
        return bracket[1]
    newline = text.find("\n", position)
    return len(text) if newline < 0 else newline + 1


def _read_arguments(text, position):
    arguments, depth, length = [], 0, len(text)
    while position < length:
        char = text[position]
        if char.isspace():
            position += 1
        elif char == "#":
            position = _after_comment(text, position)
        elif char == "(":
            depth += 1
            arguments.append(CMakeArgument("(", False))
            position += 1
        elif char == ")":
            if depth == 0:
                return arguments, position + 1
            depth -= 1
            arguments.append(CMakeArgument(")", False))
            position += 1
        elif char == '"':
            value, position = [], position + 1
            while True:
                if position >= length:
                    raise ValueError("unterminated quoted argument")
                char = text[position]
                if char == '"':
                    position += 1
                    break
                if char == "\\" and position + 1 < length:
                    following = text[position + 1]
                    if following == "\n":  # line continuation
                        pass
                    else:
                        value.append(_QUOTED_ESCAPES.get(following, following))
                    position += 2
                    continue
                value.append(char)
                position += 1
            arguments.append(CMakeArgument("".join(value), True))
        elif char == "[" and _skip_bracket(text, position) is not None:
            content, position = _skip_bracket(text, position)
            arguments.append(CMakeArgument(content, True))
        else:
            match = re.compile(r'(?:\\.|[^\s()#"\\])+').match(text, position)
            if not match:
                raise ValueError("cannot read an argument at character {}".format(position))
            arguments.append(CMakeArgument(match.group(0), False))
            position = match.end()
    raise ValueError("a command is missing its closing parenthesis")


_INNERMOST_VARIABLE = re.compile(r"\$\{([^${}]*)\}")


def expand_variables(text, variables):
    """Replace ``${NAME}`` references, innermost first; an undefined variable is empty, as in CMake."""
    while True:
        expanded = _INNERMOST_VARIABLE.sub(lambda match: variables.get(match.group(1), ""), text)
        if expanded == text:
            return expanded
        text = expanded


def evaluate_arguments(arguments, variables):
    """Expanded argument values: unquoted arguments split into list elements, empty ones dropped."""
    values = []
    for argument in arguments:
        value = expand_variables(argument.text, variables)
        if argument.quoted:
            values.append(value)
        else:
            values.extend(element for element in value.split(";") if element != "")
    return values


def keyword_arguments(values, single, multiple, options):
    """Split a macro's argument values by keyword, like ``cmake_parse_arguments``."""
    parsed = {name: None for name in single}
    parsed.update({name: [] for name in multiple})
    parsed.update({name: False for name in options})
    current = None
    for value in values:
        if value in options:
            parsed[value], current = True, None
        elif value in single or value in multiple:
            current = value
        elif current in single:
            parsed[current], current = value, None
        elif current in multiple:
            parsed[current].extend(element for element in value.split(";") if element != "")
        else:
            raise ValueError("unexpected argument {!r}".format(value))
    return parsed


# ---------------------------------------------------------------------------
# Where the CMake lists put each file
# ---------------------------------------------------------------------------

class ListedFile:
    """A file named in a CMake list and where Slicer's macros put it.

    Attributes
    ----------
    source : str
        Path relative to the repository (may start with ``..`` if outside it).
    build : str or None
        Path relative to the build tree's scripted-module folder, None if outside it.
    installed : str or None
        Path relative to the install tree's scripted-module folder, None if not installed.
    listed_in : str
        The CMake list naming it, relative to the repository.
    """

    def __init__(self, source, build, installed, listed_in):
        self.source, self.build, self.installed, self.listed_in = source, build, installed, listed_in


def _inside(path, folder):
    relative = posixpath.relpath(path, folder)
    return None if relative == ".." or relative.startswith("../") else relative


def _place_files(files, scripts, source_dir, destination_dir, install_dir, install_subdir, repository, listed_in):
    placed = []
    for name in files:
        if scripts and "py" not in posixpath.splitext(posixpath.basename(name))[1]:
            name = name + ".py"
        source = posixpath.normpath(posixpath.join(source_dir, name))
        source_relative = posixpath.relpath(source, repository)
        if posixpath.isabs(name):
            # The macros then compute a destination from the build folder: nowhere sensible.
            placed.append(ListedFile(source_relative, None, None, listed_in))
            continue
        destination = posixpath.normpath(posixpath.join(destination_dir, name))
        build = _inside(destination, BUILD_SCRIPTED_DIR)
        in_copied_folder = _inside(destination, destination_dir)
        installed = None
        if in_copied_folder is not None:
            prefix = install_dir
            if install_subdir:
                prefix = posixpath.join(install_dir, posixpath.basename(destination_dir))
            installed = _inside(posixpath.normpath(posixpath.join(prefix, in_copied_folder)), INSTALL_SCRIPTED_DIR)
        placed.append(ListedFile(source_relative, build, installed, listed_in))
    return placed


def read_cmake_project(repository=REPOSITORY, overrides=None):
    """Run the repository's CMake lists through the reader.

    Parameters
    ----------
    repository : path-like
        Repository root holding the top-level CMakeLists.txt.
    overrides : dict, optional
        Text to use instead of a file, keyed by its path relative to the
        repository (e.g. ``{"AIAIF/CMakeLists.txt": "..."}``).

    Returns
    -------
    top_level_variables : dict of str
        Variables set by the top-level CMakeLists.txt.
    listed : list of ListedFile
        Every file named to a scripted-module or Python-script macro.
    project_names : list of str
        Names given to ``project()``.
    """
    repository = Path(repository).resolve().as_posix()
    overrides = overrides or {}
    listed, project_names = [], []

    def read(folder, variables):
        list_file = posixpath.relpath(posixpath.join(folder, "CMakeLists.txt"), repository)
        if list_file in overrides:
            text = overrides[list_file]
        else:
            with open(posixpath.join(repository, list_file), encoding="utf-8") as handle:
                text = handle.read()
        variables["CMAKE_CURRENT_SOURCE_DIR"] = folder
        variables["CMAKE_CURRENT_LIST_DIR"] = folder
        for name, arguments in cmake_commands(text):
            values = evaluate_arguments(arguments, variables)
            if name == "set":
                if not values:
                    raise ValueError("set() without a variable in " + list_file)
                items = values[1:]
                if "CACHE" in items:
                    items = items[:items.index("CACHE")]
                if "PARENT_SCOPE" in items:
                    raise ValueError("set(... PARENT_SCOPE) is not understood by this reader")
                if items:
                    variables[values[0]] = ";".join(items)
                else:
                    variables.pop(values[0], None)
            elif name == "project":
                project_names.append(values[0])
                variables.update({"PROJECT_NAME": values[0], "PROJECT_SOURCE_DIR": folder,
                                  values[0] + "_SOURCE_DIR": folder})
            elif name == "add_subdirectory":
                read(posixpath.normpath(posixpath.join(folder, values[0])), dict(variables))
            elif name == "slicermacrobuildscriptedmodule":
                parsed = keyword_arguments(values, ("NAME",), ("SCRIPTS", "RESOURCES"),
                                           ("WITH_GENERIC_TESTS", "WITH_SUBDIR", "VERBOSE"))
                destination = BUILD_SCRIPTED_DIR
                if parsed["WITH_SUBDIR"]:
                    destination = posixpath.join(destination, posixpath.basename(folder))
                for key, scripts in (("SCRIPTS", True), ("RESOURCES", False)):
                    listed.extend(_place_files(parsed[key], scripts, folder, destination, INSTALL_SCRIPTED_DIR,
                                               parsed["WITH_SUBDIR"], repository, list_file))
            elif name == "ctkmacrocompilepythonscript":
                parsed = keyword_arguments(
                    values, ("TARGET_NAME", "SOURCE_DIR", "DESTINATION_DIR", "INSTALL_DIR"),
                    ("SCRIPTS", "RESOURCES"), ("NO_INSTALL_SUBDIR", "GLOBAL_TARGET"))
                source_dir = posixpath.normpath(parsed["SOURCE_DIR"] or folder)
                destination = posixpath.normpath(parsed["DESTINATION_DIR"] or "")
                for key, scripts in (("SCRIPTS", True), ("RESOURCES", False)):
                    listed.extend(_place_files(parsed[key], scripts, source_dir, destination,
                                               parsed["INSTALL_DIR"] or "", not parsed["NO_INSTALL_SUBDIR"],
                                               repository, list_file))
        return variables

    top_level = read(repository, dict(SLICER_VARIABLES, CMAKE_SOURCE_DIR=repository))
    return top_level, listed, project_names


def runtime_files(repository=REPOSITORY):
    """Files the extension uses at run time, from the working tree, relative to the repository.

    The module files (``AIAIF/*.py`` and the Python files of its subpackages), the whole ``AIAIFLib``
    package (every file but caches and build files), the network weights of every ensemble member
    with checksum and training record, the model card (its input ranges feed the training-range warnings),
    the icons, the sample data recipe and the panel files.
    """
    repository = Path(repository)
    files = {"AIAIF/AIAIF.py"}
    files.update(path.relative_to(repository).as_posix() for path in (repository / "AIAIF").rglob("*.py"))
    for path in (repository / "AIAIFLib").rglob("*"):
        if (path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
                and path.name != "CMakeLists.txt"):
            files.add(path.relative_to(repository).as_posix())
    files.update("Resources/Models/" + name for name in ("aiaif_unet.npz", "aiaif_unet.sha256", "MODEL_CARD.md",
                                                                     "training.json"))
    for pattern in ("Resources/Models/members/*/aiaif_unet.npz", "Resources/Models/members/*/aiaif_unet.sha256",
                    "Resources/Models/members/*/training.json"):
        files.update(path.relative_to(repository).as_posix() for path in repository.glob(pattern))
    for pattern in ("Resources/Icons/*.png", "Resources/UI/*.ui", "Resources/SampleData/*"):
        files.update(path.relative_to(repository).as_posix() for path in repository.glob(pattern))
    return sorted(files)


def expected_scripted_path(source):
    """Where a runtime file must sit under the scripted-module folder: the module's
    own files at its top, everything else at its repository path."""
    module_prefix = EXTENSION_NAME + "/"
    return source[len(module_prefix):] if source.startswith(module_prefix) else source


def packaging_problems(repository=REPOSITORY, overrides=None):
    """Sentences naming each runtime file the CMake lists miss or misplace, and each listed file that is absent.

    Parameters
    ----------
    repository : path-like
        Repository root.
    overrides : dict, optional
        CMake list texts to use instead of files (see ``read_cmake_project``).

    Returns
    -------
    list of str
        Empty when the packaging is complete.
    """
    _, listed, _ = read_cmake_project(repository, overrides)
    problems = []
    by_source = {}
    for entry in listed:
        by_source.setdefault(entry.source, []).append(entry)
        if not (Path(repository) / entry.source).is_file():
            problems.append("{} is listed in {} but does not exist.".format(entry.source, entry.listed_in))
    for source in runtime_files(repository):
        expected = expected_scripted_path(source)
        entries = by_source.get(source)
        if not entries:
            problems.append("{} is used at run time but no CMake list names it.".format(source))
            continue
        for entry in entries:
            if entry.build != expected:
                problems.append("{} (listed in {}) lands at {} in the build tree instead of {}.".format(
                    source, entry.listed_in, entry.build or "a place outside the scripted-module folder", expected))
            if entry.installed != expected:
                problems.append("{} (listed in {}) is installed at {} instead of {}.".format(
                    source, entry.listed_in, entry.installed or "no place (not installed)", expected))
    return problems


def png_size(path):
    """Width and height in pixels of a PNG file, from its IHDR chunk."""
    with open(path, "rb") as handle:
        header = handle.read(24)
    if len(header) < 24 or header[:8] != PNG_SIGNATURE or header[12:16] != b"IHDR":
        raise ValueError("{} is not a PNG file".format(path))
    return struct.unpack(">II", header[16:24])


def catalog_entry_problems(entry):
    """Departures of a parsed catalog entry from the ExtensionsIndex schema v1.0.2 (see CATALOG_* above)."""
    if not isinstance(entry, dict):
        return ["the catalog entry is not a JSON object"]
    problems = ["required key {!r} is missing".format(key) for key in CATALOG_REQUIRED_KEYS if key not in entry]
    for key, value in entry.items():
        expected = CATALOG_PROPERTY_TYPES.get(key)
        if expected is None:
            problems.append("key {!r} is not in the schema".format(key))
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            problems.append("{!r} must be a {}".format(key, expected.__name__))
    if isinstance(entry.get("scm_type"), str) and entry["scm_type"] not in ("git", "local"):
        problems.append("'scm_type' must be 'git' or 'local'")
    if isinstance(entry.get("build_dependencies"), list) and not all(
            isinstance(item, str) for item in entry["build_dependencies"]):
        problems.append("'build_dependencies' must list strings")
    if isinstance(entry.get("tier"), int) and not 1 <= entry["tier"] <= 5:
        problems.append("'tier' must be 1 to 5")
    return problems


# ---------------------------------------------------------------------------
# The CMake reader itself
# ---------------------------------------------------------------------------

def test_reader_handles_comments_quotes_brackets_and_nested_variables():
    text = (
        '#[[ a bracket comment with set(IGNORED x) ]]\n'
        'set(NAME Foo) # trailing comment\n'
        'set(FILES ${NAME}.py "b c.py;d.py" [[e.png]] f\\;g)\n'
        'set(KEY NAME)\n'
        'set(NESTED "${${KEY}}Lib" "say \\"hi\\"")\n'
        'set(EMPTY)\n'
    )
    variables = {}
    for name, arguments in cmake_commands(text):
        assert name == "set"
        values = evaluate_arguments(arguments, variables)
        if values[1:]:
            variables[values[0]] = ";".join(values[1:])
        else:
            variables.pop(values[0], None)
    assert "IGNORED" not in variables
    assert variables["FILES"] == "Foo.py;b c.py;d.py;e.png;f\\;g"
    assert variables["NESTED"] == 'FooLib;say "hi"'
    assert evaluate_arguments([CMakeArgument("${FILES}", False)], variables)[:3] == ["Foo.py", "b c.py", "d.py"]
    assert evaluate_arguments([CMakeArgument("${FILES}", True)], variables) == [variables["FILES"]]
    assert "EMPTY" not in variables
    assert expand_variables("${UNDEFINED}x", variables) == "x"


def test_reader_rejects_an_unclosed_command():
    with pytest.raises(ValueError, match="closing parenthesis"):
        cmake_commands("set(A b\n")


# ---------------------------------------------------------------------------
# Every runtime file is listed, lands where the code looks, and exists
# ---------------------------------------------------------------------------

def test_module_file_exists():
    assert (REPOSITORY / EXTENSION_NAME / (EXTENSION_NAME + ".py")).is_file()


def test_runtime_files_cover_the_package_weights_and_icon():
    files = runtime_files()
    assert "AIAIFLib/__init__.py" in files and "AIAIFLib/network.py" in files
    assert {"Resources/Models/aiaif_unet.npz", "Resources/Models/aiaif_unet.sha256",
            "Resources/Icons/AIAIF.png", "Resources/Models/training.json"} <= set(files)
    assert not any("__pycache__" in name or name.endswith("render_icon.py") or name.endswith("loss_curve.png")
                   for name in files)


def test_every_runtime_file_is_listed_and_every_listed_file_exists():
    assert packaging_problems() == []


def test_build_and_install_trees_mirror_the_repository():
    _, listed, _ = read_cmake_project()
    placed = {entry.source: (entry.build, entry.installed) for entry in listed}
    # The module beside its package and resources, as AIAIF.py and AIAIFLib/network.py expect.
    assert placed["AIAIF/AIAIF.py"] == ("AIAIF.py", "AIAIF.py")
    assert placed["AIAIFLib/network.py"] == ("AIAIFLib/network.py", "AIAIFLib/network.py")
    assert placed["Resources/Models/aiaif_unet.npz"] == ("Resources/Models/aiaif_unet.npz",) * 2
    assert placed["Resources/Icons/AIAIF.png"] == ("Resources/Icons/AIAIF.png",) * 2


def _module_list_text():
    return (REPOSITORY / EXTENSION_NAME / "CMakeLists.txt").read_text(encoding="utf-8")


def test_checker_reports_exactly_the_file_whose_line_is_removed():
    # Remove each file line of the module's CMake list in turn: the checker
    # must name that one file, and together the lines must cover every runtime file.
    module_list = EXTENSION_NAME + "/CMakeLists.txt"
    lines = _module_list_text().splitlines(keepends=True)
    reported = []
    for index, line in enumerate(lines):
        if not re.fullmatch(r"\s*[^\s()#]+\.[^\s()#]+\s*", line):
            continue
        pruned = "".join(lines[:index] + lines[index + 1:])
        problems = packaging_problems(overrides={module_list: pruned})
        assert len(problems) == 1 and problems[0].endswith(" is used at run time but no CMake list names it."), (
            line, problems)
        reported.append(problems[0].split(" ", 1)[0])
        assert expected_scripted_path(reported[-1]) in line.replace("${MODULE_NAME}", EXTENSION_NAME)
    assert sorted(reported) == runtime_files()


def test_checker_reports_a_listed_file_that_does_not_exist():
    text = _module_list_text().replace("AIAIFLib/aif.py", "AIAIFLib/aif.py\n  AIAIFLib/no_such_module.py", 1)
    problems = packaging_problems(overrides={EXTENSION_NAME + "/CMakeLists.txt": text})
    assert problems == ["AIAIFLib/no_such_module.py is listed in AIAIF/CMakeLists.txt but does not exist."]


def test_checker_reports_a_resource_listed_relative_to_the_module_folder():
    # The classic mistake: the module macro with a "../" path copies the file
    # beside the scripted-module folder in the build tree and never installs it.
    text = (
        "set(MODULE_NAME AIAIF)\n"
        "slicerMacroBuildScriptedModule(NAME ${MODULE_NAME} SCRIPTS ${MODULE_NAME}.py\n"
        "  RESOURCES ../Resources/Icons/AIAIF.png)\n"
    )
    problems = packaging_problems(overrides={EXTENSION_NAME + "/CMakeLists.txt": text})
    assert ("Resources/Icons/AIAIF.png (listed in AIAIF/CMakeLists.txt) lands at a place outside the "
            "scripted-module folder in the build tree instead of Resources/Icons/AIAIF.png.") in problems
    assert ("Resources/Icons/AIAIF.png (listed in AIAIF/CMakeLists.txt) is installed at no place "
            "(not installed) instead of Resources/Icons/AIAIF.png.") in problems
    assert "AIAIFLib/network.py is used at run time but no CMake list names it." in problems


def test_checker_finds_a_new_unlisted_panel_file(tmp_path):
    # A copy of the tree with empty files: a panel file added without its CMake line.
    for source in runtime_files():
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / source).write_bytes(b"")
    for list_file in ("CMakeLists.txt", EXTENSION_NAME + "/CMakeLists.txt"):
        (tmp_path / list_file).write_text((REPOSITORY / list_file).read_text(encoding="utf-8"), encoding="utf-8")
    assert packaging_problems(tmp_path) == []
    (tmp_path / "Resources" / "UI").mkdir(exist_ok=True)
    (tmp_path / "Resources" / "UI" / "AIAIFDialog.ui").write_text("<ui/>", encoding="utf-8")
    assert packaging_problems(tmp_path) == [
        "Resources/UI/AIAIFDialog.ui is used at run time but no CMake list names it."]


# ---------------------------------------------------------------------------
# Extension metadata
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def metadata():
    variables, _, project_names = read_cmake_project()
    return variables, project_names


def _raw_github_prefix(homepage):
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", homepage)
    assert match, "EXTENSION_HOMEPAGE should be the GitHub repository URL"
    return "https://raw.githubusercontent.com/{}/{}/main/".format(match.group(1), match.group(2))


def test_metadata_is_complete(metadata):
    variables, project_names = metadata
    assert project_names[0] == EXTENSION_NAME
    for name in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                 "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert variables.get(name, "").strip(), name + " is empty"
    assert variables["EXTENSION_CATEGORY"] == "Cardiac"
    assert variables["EXTENSION_DEPENDS"] == "NA"  # Sequences, Segmentations, SampleData... are core modules


#: The oldest supported Slicer release: the module's start-up and every Slicer name it uses were
#: checked from there on (Testing/SLICER_API.md).
SUPPORTED_SLICER = "Slicer 5.8 and later"


def test_supported_slicer_versions_are_stated_in_the_catalog_metadata_and_the_readme(metadata):
    variables, _ = metadata
    assert SUPPORTED_SLICER in variables["EXTENSION_DESCRIPTION"]
    assert SUPPORTED_SLICER in (REPOSITORY / "README.md").read_text(encoding="utf-8")
    assert SUPPORTED_SLICER in (REPOSITORY / "Testing" / "SLICER_API.md").read_text(encoding="utf-8")


def test_icon_and_screenshot_urls_name_files_in_the_repository(metadata):
    variables, _ = metadata
    prefix = _raw_github_prefix(variables["EXTENSION_HOMEPAGE"])
    icon_url = variables["EXTENSION_ICONURL"]
    assert icon_url == prefix + "Resources/Icons/" + EXTENSION_NAME + ".png"
    screenshots = variables["EXTENSION_SCREENSHOTURLS"].split()
    assert screenshots
    for url in [icon_url] + screenshots:
        assert url.startswith(prefix), url
        path = REPOSITORY / url[len(prefix):]
        assert path.is_file(), url
        png_size(path)  # a PNG
    for url in screenshots:
        assert (REPOSITORY / url[len(prefix):]).stat().st_size < MAX_SCREENSHOT_BYTES


def test_icon_and_screenshot_urls_are_one_quoted_string_each():
    # The ExtensionsIndex validator (scripts/check_description_files.py) reads
    # both from the raw text of the top-level file, one double-quoted value on
    # the set() line; screenshot URLs share that one string, space-separated.
    text = (REPOSITORY / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r'^set\(EXTENSION_ICONURL "[^"\s]+"\)$', text, re.MULTILINE)
    assert re.search(r'^set\(EXTENSION_SCREENSHOTURLS "[^"]+"\)$', text, re.MULTILINE)


# ---------------------------------------------------------------------------
# The catalog entry for the ExtensionsIndex
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def catalog_entry_text():
    return (REPOSITORY / (EXTENSION_NAME + ".json")).read_text(encoding="utf-8")


def test_catalog_entry_follows_the_schema(catalog_entry_text):
    entry = json.loads(catalog_entry_text)
    assert catalog_entry_problems(entry) == []
    assert entry["$schema"] == CATALOG_SCHEMA_URL


def test_catalog_entry_agrees_with_the_cmake_metadata(catalog_entry_text, metadata):
    variables, _ = metadata
    entry = json.loads(catalog_entry_text)
    assert entry["category"] == variables["EXTENSION_CATEGORY"]
    assert entry["scm_url"].rstrip("/").removesuffix(".git") == variables["EXTENSION_HOMEPAGE"].rstrip("/")
    assert entry["scm_url"].startswith("https://")
    depends = [] if variables["EXTENSION_DEPENDS"] == "NA" else variables["EXTENSION_DEPENDS"].split(";")
    assert sorted(entry.get("build_dependencies", [])) == sorted(depends)
    # Extension name without the "Slicer" prefix, repository name with it (ExtensionsIndex rules).
    assert not EXTENSION_NAME.lower().startswith("slicer")
    assert entry["scm_url"].rstrip("/").rsplit("/", 1)[-1].startswith("Slicer")


def test_catalog_entry_is_formatted_like_the_index(catalog_entry_text):
    # The index requires LF line endings and formats entries with two-space indents.
    assert "\r" not in catalog_entry_text
    assert catalog_entry_text == json.dumps(json.loads(catalog_entry_text), indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("entry, problem", [
    ({"$schema": CATALOG_SCHEMA_URL, "category": "Cardiac"}, "required key 'scm_url' is missing"),
    ({"$schema": CATALOG_SCHEMA_URL, "category": "Cardiac", "scm_url": "u", "homepage": "h"},
     "key 'homepage' is not in the schema"),
    ({"$schema": CATALOG_SCHEMA_URL, "category": "Cardiac", "scm_url": "u", "build_dependencies": "NA"},
     "'build_dependencies' must be a list"),
    ({"$schema": CATALOG_SCHEMA_URL, "category": "Cardiac", "scm_url": "u", "tier": 7}, "'tier' must be 1 to 5"),
    ({"$schema": CATALOG_SCHEMA_URL, "category": "Cardiac", "scm_url": "u", "enabled": "yes"},
     "'enabled' must be a bool"),
    ({"$schema": CATALOG_SCHEMA_URL, "category": "Cardiac", "scm_url": "u", "scm_type": "svn"},
     "'scm_type' must be 'git' or 'local'"),
])
def test_catalog_check_reports_each_schema_violation(entry, problem):
    assert catalog_entry_problems(entry) == [problem]


# ---------------------------------------------------------------------------
# Licence and icon
# ---------------------------------------------------------------------------

def test_license_is_bsd_3_clause_and_matches_pyproject():
    text = (REPOSITORY / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License")
    assert re.search(r"Copyright \(c\) 2026, the AI-AIF developers", text)
    assert [int(number) for number in re.findall(r"^(\d)\. ", text, re.MULTILINE)] == [1, 2, 3]
    assert "Neither the name of the copyright holder" in text and 'AS IS' in text
    pyproject = (REPOSITORY / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
        license_field = tomllib.loads(pyproject)["project"]["license"]
        license_name = license_field["text"] if isinstance(license_field, dict) else license_field
    except ImportError:  # Python 3.10
        license_name = re.search(r'^license\s*=\s*(?:\{\s*text\s*=\s*)?"([^"]+)"', pyproject, re.MULTILINE).group(1)
    assert license_name == "BSD-3-Clause"


def _png_bytes(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    return (PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_png_size_reads_the_header(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(_png_bytes(3, 5))
    assert png_size(path) == (3, 5)
    path.write_bytes(b"GIF89a" + _png_bytes(3, 5)[6:])
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(path)


def test_icon_is_a_128_pixel_square_png():
    assert png_size(REPOSITORY / "Resources" / "Icons" / (EXTENSION_NAME + ".png")) == (128, 128)
