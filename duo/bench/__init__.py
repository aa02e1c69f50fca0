"""duo.bench"""
