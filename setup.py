"""Packaging for eventservice: the classic Pyro Event Service on Pyro5."""
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="eventservice",
    version="1.0.0",
    description="The classic Pyro Event Service (publish/subscribe) rebuilt for Python 3 on Pyro5",
    long_description=Path(__file__).with_name("README.txt").read_text(encoding="utf-8"),
    long_description_content_type="text/plain",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["eventservice", "eventservice.*"]),
    package_data={"eventservice": ["py.typed", "server/monitor/*.html"]},
    install_requires=["Pyro5>=5.16,<5.18", "regex>=2023.0"],  # Pyro5: the versions tested (pyro/compat.py)
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6", "msgpack>=1.0", "cryptography>=41",
                 "prometheus_client>=0.17", "redis>=5.0", "hiredis>=2"],
        "fast": ["msgpack>=1.0"],
        # the checks .ci/run makes (config in pyproject.toml); pinned to a minor release: new ones add rules
        "dev": ["ruff>=0.17.6,<0.18", "mypy>=2.4,<2.5"],
        "monitoring": ["prometheus_client>=0.17"],
        "redis": ["redis>=5.0", "hiredis>=2", "msgpack>=1.0"],  # es --backbone: several Event Services over Redis
    },
    entry_points={"console_scripts": ["es=eventservice.server.cli:main", "esc=eventservice.tools.esc:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: System :: Networking",
        "Topic :: System :: Distributed Computing",
    ],
)
