"""duo.audio"""
