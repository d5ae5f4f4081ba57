"""The HTTP API (FastAPI): create_app() in api.app. Nothing is imported here, so that a
command using one module of the API (`crmsync connections`: api.connections) does not
import the whole API and the dashboard."""
