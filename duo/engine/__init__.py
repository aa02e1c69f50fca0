"""duo.engine"""
