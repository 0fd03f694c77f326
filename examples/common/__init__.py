"""Offline data, metrics and model helpers shared by the example scripts.

Everything here renders or loads data that ships inside pip packages (DejaVu fonts from matplotlib,
photos from scikit-image and scikit-learn), so every example and its tests run without a network.
"""
