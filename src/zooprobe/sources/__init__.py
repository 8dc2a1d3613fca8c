"""The built-in catalog sources (torchvision, timm, Keras, Hugging Face Hub, TF-Hub, Kaggle), registered as plugins."""
