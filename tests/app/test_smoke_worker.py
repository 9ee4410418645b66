import pytest

from tests.app.conftest import named_file, real_face_paths, wait_for_job


def test_upload_processed_by_worker(worker, staff_client, make_dataset):
    ds = make_dataset()
    path = real_face_paths(1)[0]
    resp = staff_client.post(f"/api/datasets/{ds['id']}/upload/", {"files": [named_file(path.name, path.read_bytes())]},
                             format="multipart")
    assert resp.status_code == 202, resp.content
    job = wait_for_job(resp.json()["job"], timeout=60)
    assert job.state == "succeeded", job.error
