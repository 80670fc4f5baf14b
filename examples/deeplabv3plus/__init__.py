"""The DeepLabV3+ example of pixcon (see README.md); run it with run.py."""
