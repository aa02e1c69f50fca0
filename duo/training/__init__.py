"""duo.training"""
