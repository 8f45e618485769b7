"""sgwatch: drift and exposure watch for Alibaba Cloud ECS security groups."""

__version__ = "0.1.0"
