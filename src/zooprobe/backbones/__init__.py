"""The Backbone contract, one adapter per framework, and feature extraction at cut points."""
