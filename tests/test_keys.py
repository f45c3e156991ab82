import pytest
from django.db import connection

from accounts import keys
from accounts.apikeys import authenticate_key, create_api_key, revoke_api_key
from accounts.models import ApiKey


def test_keys_are_unique_checksummed_and_recognisable():
    generated = {keys.generate_key() for _ in range(1000)}
    assert len(generated) == 1000
    for key in list(generated)[:50]:
        assert keys.KEY_PATTERN.match(key)
        assert keys.is_well_formed(key)
        # one changed character breaks the checksum
        broken = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
        assert not keys.is_well_formed(broken)
        assert not keys.is_well_formed(key[:-1])


@pytest.mark.django_db
def test_secret_is_nowhere_in_the_database(alice):
    api_key, full_key = create_api_key(user=alice, name="ci")
    secret_part = full_key[len(api_key.prefix):]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        dumped = repr(cursor.fetchall())
    assert full_key not in dumped
    assert secret_part[:20] not in dumped
    assert api_key.prefix in dumped


@pytest.mark.django_db
def test_key_works_until_revoked(alice):
    api_key, full_key = create_api_key(user=alice)
    assert authenticate_key(full_key) == api_key
    revoke_api_key(api_key=api_key)
    assert authenticate_key(full_key) is None


@pytest.mark.django_db
def test_malformed_key_is_refused_without_a_query(alice, django_assert_num_queries):
    _, full_key = create_api_key(user=alice)
    with django_assert_num_queries(0):
        assert authenticate_key(full_key[:-2]) is None
        assert authenticate_key("ank_" + "x" * 42) is None


@pytest.mark.django_db
def test_last_used_is_written_at_most_once_a_minute(alice, django_assert_num_queries):
    api_key, full_key = create_api_key(user=alice)
    authenticate_key(full_key)
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None
    with django_assert_num_queries(1):  # the lookup only, no UPDATE
        authenticate_key(full_key)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at == first


@pytest.mark.django_db
def test_at_most_20_live_keys(alice):
    from accounts.apikeys import TooManyKeys

    for _ in range(20):
        create_api_key(user=alice)
    with pytest.raises(TooManyKeys):
        create_api_key(user=alice)
    revoke_api_key(api_key=alice.api_keys.first())
    create_api_key(user=alice)
