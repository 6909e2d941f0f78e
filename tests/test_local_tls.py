from __future__ import annotations

import datetime
import ssl
from typing import Any

from cryptography import x509

from pipeline import aws, local_tls
from pipeline.local_server import statements_for_transport

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_the_certificate_is_for_loopback_and_signed_by_the_ca_whose_key_is_never_written(tmp_path):
    files = local_tls.ensure(tmp_path, NOW)

    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "endpoint-key.pem", "endpoint.pem"]
    # What a client does with the bundle: the CA loads as the only trust anchor.
    assert ssl.create_default_context(cafile=str(files.ca)).get_ca_certs()[0]["subject"]


def test_the_files_are_kept_until_near_expiry_then_renewed(tmp_path):
    files = local_tls.ensure(tmp_path, NOW)
    first = files.cert.read_bytes()

    assert local_tls.ensure(tmp_path, NOW + datetime.timedelta(days=300)).cert.read_bytes() == first
    renewed = local_tls.ensure(tmp_path, NOW + local_tls.LIFETIME - local_tls.RENEW_BEFORE)
    assert renewed.cert.read_bytes() != first

    files.key.write_text("not a key")
    assert local_tls.ensure(tmp_path, NOW).key.read_text() != "not a key"


POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        aws.tls_only_policy("state")["Statement"][0],
        {
            "Sid": "Other",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}},
        },
    ],
}


def test_a_secure_transport_condition_is_settled_by_the_servers_transport_and_others_left_alone():
    over_tls = statements_for_transport(POLICY, tls=True)["Statement"]
    plain = statements_for_transport(POLICY, tls=False)["Statement"]

    assert [s["Sid"] for s in over_tls] == ["Other"]
    assert [s["Sid"] for s in plain] == ["TLSOnly", "Other"]
    assert "Condition" not in plain[0] and plain[1]["Condition"] == POLICY["Statement"][1]["Condition"]
