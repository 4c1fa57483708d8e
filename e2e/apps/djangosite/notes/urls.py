from django.urls import path

from . import views

app_name = "notes"

urlpatterns = [
    path("", views.note_list, name="list"),
    path("new/", views.note_create, name="create"),
    path("api/", views.note_api, name="api"),
    path("api/<int:pk>/", views.note_detail_api, name="detail-api"),
]
