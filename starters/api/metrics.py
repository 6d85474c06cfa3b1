"""(issue 12: filled in by its owner)"""

from fastapi import APIRouter

router = APIRouter()
