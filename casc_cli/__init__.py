"""casc: causal scrubbing experiments from YAML declarations.

Data flows spec -> compile -> engine -> report:

- :mod:`casc_cli.spec` parses and validates task and hypothesis YAML files;
- :mod:`casc_cli.formula` compiles formulas through an ``ast`` whitelist;
- :mod:`casc_cli.data` builds the finite dataset ``D``;
- :mod:`casc_cli.graph` compiles model graphs and interpretation trees into a
  treeified scrubbing recipe;
- :mod:`casc_cli.engine` runs the recipe on numpy arrays;
- :mod:`casc_cli.report` prints tables and JSON;
- :mod:`casc_cli.api` is the library entry point the CLI is a thin layer over.
"""

__version__ = "0.1.0"
