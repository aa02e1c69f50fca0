"""duo.server"""
