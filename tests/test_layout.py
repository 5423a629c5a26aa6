"""The shape of the code: googlenet_chainer's dependency rule and the sizes
the project keeps to, checked from the sources' own imports and
definitions."""
import ast
import os

import googlenet_chainer

from helpers import ROOT

SCRIPTS = ('googlenet_predict', 'convert_caffe_model', 'train_googlenet',
           'evaluate_googlenet', 'export_googlenet')
# Top-level files the library may import: the Chain and Caffe's schema.
TOP_LEVEL = ('tuned_googlenet', 'caffe_pb2')
PACKAGE = os.path.join(ROOT, 'googlenet_chainer')


def library_modules():
    """{dotted name under googlenet_chainer: path} of every module."""
    found = {}
    for folder, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, PACKAGE)[:-3].replace(
                    os.sep, '.')
                found[dotted] = path
    return found


def project_imports(path):
    """The project's modules a file imports, anywhere in it: names under
    googlenet_chainer (dotted, without the prefix) and top-level files."""
    names = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module] + ['{}.{}'.format(node.module, a.name)
                                       for a in node.names]
        else:
            continue
        for module in modules:
            if module.startswith('googlenet_chainer.'):
                names.add(module[len('googlenet_chainer.'):])
            elif module in SCRIPTS + TOP_LEVEL:
                names.add(module)
    return names


def layer_of():
    return {module: i for i, layer in enumerate(googlenet_chainer.LAYERS)
            for module in layer}


def test_every_module_has_one_place_in_the_layers():
    listed = [module for layer in googlenet_chainer.LAYERS
              for module in layer]
    assert len(listed) == len(set(listed))
    modules = {name for name in library_modules()
               if not name.endswith('__init__')}
    assert set(listed) - {'tuned_googlenet'} == modules


def test_modules_import_only_from_the_layers_below():
    layers = layer_of()
    modules = dict(library_modules(),
                   tuned_googlenet=os.path.join(ROOT, 'tuned_googlenet.py'))
    wrong = []
    for name, path in modules.items():
        if name.endswith('__init__'):
            continue
        for imported in project_imports(path):
            if imported == 'caffe_pb2':
                continue
            # "from googlenet_chainer import cli" names the module cli.
            target = imported if imported in layers else None
            if target is None and imported in SCRIPTS:
                wrong.append('{} imports the script {}'.format(name,
                                                               imported))
            elif target is not None and layers[target] >= layers[name]:
                wrong.append('{} (layer {}) imports {} (layer {})'.format(
                    name, layers[name], target, layers[target]))
    assert not wrong, '\n'.join(wrong)


def test_the_package_files_import_nothing():
    """So that a script loads only the modules it uses."""
    for name, path in library_modules().items():
        if name.endswith('__init__'):
            tree = ast.parse(open(path).read())
            assert not [node for node in ast.walk(tree) if isinstance(
                node, (ast.Import, ast.ImportFrom))], path


def product_files():
    """The product's Python files, generated ones left out."""
    paths = [os.path.join(ROOT, name + '.py')
             for name in SCRIPTS + ('tuned_googlenet',)]
    return paths + list(library_modules().values())


def test_files_and_functions_stay_small():
    long_files, long_functions = [], []
    for path in product_files():
        with open(path) as f:
            source = f.read()
        lines = source.count('\n')
        limit = 300 if path.endswith('train_googlenet.py') else 400
        if lines > limit and not path.endswith('fast_ops.py'):
            long_files.append('{}: {} lines'.format(path, lines))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60 and node.name != 'build_parser':
                    long_functions.append('{}:{} {} lines'.format(
                        path, node.name, length))
    assert not long_files and not long_functions, long_files + long_functions
