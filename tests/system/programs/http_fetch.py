"""Fetches one URL twice with the standard library, through urllib.request and through
http.client, and prints the length and sha256 of each body (JSON).

    python3 http_fetch.py URL
"""
import hashlib
import http.client
import json
import sys
import urllib.parse
import urllib.request

URL = sys.argv[1]


def digest(body: bytes) -> list:
    return [len(body), hashlib.sha256(body).hexdigest()]


opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the URL itself
with opener.open(URL, timeout=60) as response:
    by_urllib = digest(response.read())
parts = urllib.parse.urlsplit(URL)
connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
connection.request("GET", parts.path)
response = connection.getresponse()
by_http_client = digest(response.read())
connection.close()
print(json.dumps({"urllib": by_urllib, "http.client": by_http_client,
                  "status": response.status}))
