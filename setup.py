"""Only a workaround: the project is configured in pyproject.toml.

setuptools' editable wheel installs data files only if the distribution has a
`has_data` method, which it lacks (it has `has_data_files`), so `pip install -e`
would leave out share/man/man1/gdag.1. This distribution class adds it.
"""

from setuptools import setup
from setuptools.dist import Distribution


class GdagDistribution(Distribution):
    def has_data(self) -> bool:
        return bool(self.has_data_files())


setup(distclass=GdagDistribution)
