import os
import time

from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render

from .forms import NoteForm
from .models import Note


def note_list(request):
    return render(request, "notes/list.html", {"notes": Note.objects.all()})


def note_create(request):
    if request.method == "POST":
        form = NoteForm(request.POST)
        if form.is_valid():
            form.save()
            return redirect("notes:list")
    else:
        form = NoteForm()
    return render(request, "notes/form.html", {"form": form})


def note_api(request):
    # ?sleep= keeps a worker busy so that concurrent requests spread over
    # the workers (the tests check that every worker sees the same data).
    time.sleep(min(float(request.GET.get("sleep", 0)), 2.0))
    notes = [{"id": n.id, "title": n.title, "body": n.body} for n in Note.objects.all()]
    return JsonResponse(
        {
            "count": len(notes),
            "notes": notes,
            "pid": os.getpid(),
            "script_name": request.META.get("SCRIPT_NAME", ""),
            "path": request.path,
            "path_info": request.path_info,
            "query": request.GET.get("q"),
        }
    )


def note_detail_api(request, pk):
    try:
        n = Note.objects.get(pk=pk)
    except Note.DoesNotExist:
        raise Http404("no such note")
    return JsonResponse({"id": n.id, "title": n.title, "body": n.body})
